"""What ``python -m benchmarks.run`` writes: ``results.md`` and the ``throughput.png`` chart."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["write_chart", "write_markdown"]


def _fmt(value: float | None, spec: str = ".0f") -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return format(value, spec)


def _mr(stat: dict[str, float] | None, spec: str = ".0f") -> str:
    if not stat:
        return "n/a"
    return f"{_fmt(stat['median'], spec)} ({_fmt(stat['min'], spec)}-{_fmt(stat['max'], spec)})"


def write_markdown(path: Path, doc: dict[str, Any]) -> None:
    setup = doc["setup"]
    lib = doc["machine"].get("library", {})
    lines = [
        "# makini_async benchmark results",
        "",
        f"Generated {doc['generated']} by `{doc['command']}`.",
        "",
        "## Setup",
        "",
        (
            f"- Library: makini_async at commit {lib.get('commit')}"
            f"{' with uncommitted changes' if lib.get('uncommitted_library_changes') else ''}"
            f" (sources sha256 {lib.get('source_sha256')})."
        ),
        (
            f"- Machine: {doc['machine'].get('cpu_model', '?')}, {doc['machine']['cpus']} cores, "
            f"Python {doc['machine']['python']}, aiohttp {doc['machine'].get('aiohttp')}, "
            f"httpx {doc['machine'].get('httpx')}, orjson {doc['machine'].get('orjson')}."
        ),
        (
            f"- Client pinned to CPU(s) {setup['client_cpus'] or 'not pinned'}; mock server "
            f"({setup['server_processes']} process(es), one port) pinned to "
            f"{setup['server_cpus'] or 'not pinned'}. Everything on 127.0.0.1, same machine: "
            "client and server compete for the machine's cores."
        ),
        (
            f"- {setup['rounds']} round(s); every contender run is a fresh process; "
            "contender order rotates per round; one unrecorded warm-up run per scenario"
            f"{' (disabled)' if not setup['warmup'] else ''}."
        ),
        (
            f"- Concurrency: {setup['concurrency']} requests in flight for every concurrent "
            "contender (makini_async `Limits(max_in_flight=...)`, baselines' semaphore and "
            "connector limit). Page size: the entity maximum (work orders: 200)."
        ),
        (
            "- Scenario D: makini_async contenders use `RetryPolicy(wait_initial=0.05, "
            "wait_max=1)`; baselines never retry. The mock's 429 carries "
            f"`Retry-After: {setup['retry_after_header']}` (the mock rounds up to whole seconds)."
        ),
        (
            "- Values: median (min-max) over rounds. Ratios: contender records/s divided by the "
            "hand-written aiohttp baseline's records/s in the same round, then median (min-max)."
        ),
        "",
        "## Targets",
        "",
        "| target | scenario | ratio median (min-max) | met (median) |",
        "|---|---|---|---|",
    ]
    lines.extend(
        f"| {t['description']} | {t['scenario']} | {_mr(t['ratio'], '.2f')} | "
        f"{'n/a' if t['met'] is None else ('yes' if t['met'] else 'NO')} |"
        for t in doc["targets"]
    )
    lines.append("")
    for name, summary in doc["scenarios"].items():
        cfg = doc["config"][name]
        lines += [
            f"## {summary['title']}",
            "",
            (
                f"Run size: {cfg['connections']} connections x {cfg['records']} records "
                f"(expected {cfg['connections'] * cfg['records']:,}); server options "
                f"{cfg['server'] or 'none'}."
            ),
            "",
            (
                "| contender | completeness | records/s | x aiohttp | requests/s | p50 page ms "
                "| p99 page ms | peak RSS MiB | CPU s / 10k rec | dupes | HTTP errors | retries |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for kind, s in summary["contenders"].items():
            comp = s["completeness"]
            lines.append(
                f"| {kind} | {_mr(comp, '.4f')} | {_mr(s['records_per_s'])} | "
                f"{_mr(s['ratio_vs_aiohttp'], '.2f')} | {_mr(s['requests_per_s'])} | "
                f"{_mr(s['p50_page_ms'], '.1f')} | {_mr(s['p99_page_ms'], '.1f')} | "
                f"{_mr(s['peak_rss_mib'], '.1f')} | {_mr(s['cpu_s_per_10k_records'], '.3f')} | "
                f"{s['duplicates']} | {_mr(s['http_errors'])} | "
                f"{_mr(s['retries']) if s['retries'] else '-'} |"
            )
            if s["failed_runs"]:
                lines.append(
                    f"|  ^ {s['failed_runs']} run(s) failed: "
                    f"{s['errors_text'][0][:200]!r} | | | | | | | | | | | |"
                )
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def write_chart(path: Path, doc: dict[str, Any]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(doc["scenarios"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        contenders = doc["scenarios"][name]["contenders"]
        kinds = list(contenders)
        med = [contenders[k]["records_per_s"]["median"] for k in kinds]
        lo = [m - contenders[k]["records_per_s"]["min"] for m, k in zip(med, kinds, strict=False)]
        hi = [contenders[k]["records_per_s"]["max"] - m for m, k in zip(med, kinds, strict=False)]
        colors = ["tab:blue" if k.startswith("makini") else "tab:gray" for k in kinds]
        ax.bar(kinds, med, yerr=[lo, hi], color=colors, capsize=3)
        ax.set_title(doc["scenarios"][name]["title"][:48], fontsize=9)
        ax.set_ylabel("records/s (median, min-max)")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
