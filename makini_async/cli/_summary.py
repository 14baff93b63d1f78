"""The summary of a pull on the command line: printed for people, JSON for schedulers.

The printed summary is a list of sections (:data:`SECTIONS`), each a small
function from the pull's outcome to its lines: a new fact is a new function.
Failures are grouped by cause (outcome, error class and code, and the
message without what differs per connection), so that 300 connections
failing for one reason read as one entry; the JSON summary keeps every
failure besides the groups.
"""

from __future__ import annotations

import textwrap
from pathlib import Path  # noqa: TC003 - attrs field type
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson

from makini_async.bulk import Outcome, PullReport
from makini_async.bulk._report import FailureGroup, error_fields, first_sentence
from makini_async.errors import SinkUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from makini_async.entities import Entity


__all__ = [
    "SECTIONS",
    "PullResult",
    "causes",
    "failures",
    "report_entities",
    "sink_outage",
    "summary",
    "summary_json",
]


@attrs.frozen
class PullResult:
    """What a pull left behind, for the summary."""

    report: PullReport
    where: str  # the sink's location: a directory, or a database without its password
    paths: dict[Entity, Path]
    per_entity: dict[Entity, int]
    invalid_paths: dict[Entity, Path]
    invalid_per_entity: dict[Entity, int]
    sink_kind: str = "jsonl"
    #: The signal that stopped the pull (``"SIGINT"``, ``"SIGTERM"``), if one did.
    interrupted: str | None = None
    #: The sink outage that ended the pull, if one did (its message).
    sink_unavailable: str | None = None
    #: Whether the pull ran tuned (``tuning.tuned()``; ``None``: not said).
    tuned: bool | None = None
    #: A sharded pull's units: ``(unit, attempts, node)`` (node: a Ray node's id, or None).
    units: tuple[tuple[int, int, str | None], ...] | None = None


#: Columns the summary's failure details wrap at (well inside a 120-column terminal).
WIDTH: Final = 100
#: Connections named per cause in the summary (the JSON summary lists every one).
EXAMPLES: Final = 3


def failures(report: PullReport) -> list[dict[str, Any]]:
    """Every failed chain, one entry per (connection, reason): nothing is left out."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for chain in report.chains:
        if not chain.done or chain.outcome is Outcome.COMPLETED:
            continue
        code, message, request_id = error_fields(chain.error)
        # One entry per reason (outcome and code): its first message and request ID
        # stand for the rest (they differ only in counts and IDs).
        key = (chain.connection, chain.outcome.value, code)
        entry = groups.setdefault(
            key,
            {
                "connection": chain.connection,
                "outcome": chain.outcome.value,
                "code": code,
                "message": first_sentence(message),
                "entities": [],
                "request_ids": [],
            },
        )
        entry["entities"].append(chain.entity.value)
        if request_id is not None:
            entry["request_ids"].append(request_id)
    return sorted(groups.values(), key=lambda e: (e["connection"], e["outcome"], e["code"]))


def causes(report: PullReport) -> list[FailureGroup]:
    """Failures grouped by cause.

    Without the chains a sink outage stopped (told once, on its own line) and
    without chains cancelled with no error of their own (stopped by a signal
    or by the end of the pull): neither is a failure of their connection.
    """
    return [
        g
        for g in report.failure_groups()
        if g.error_type != SinkUnavailable.__name__
        and not (g.outcome is Outcome.CANCELLED and g.error_type == "-")
    ]


def sink_outage(outcome: PullResult) -> tuple[str, int] | None:
    """The sink outage that ended the pull, and the chains it stopped; ``None`` if none."""
    stopped = [c for c in outcome.report.chains if isinstance(c.error, SinkUnavailable)]
    message = outcome.sink_unavailable
    if message is None and stopped:
        message = error_fields(stopped[0].error)[1]
    if message is None:
        return None
    return first_sentence(message).removeprefix("sink unavailable: "), len(stopped)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _examples(names: Sequence[str], shown: int = EXAMPLES) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return f"e.g. {', '.join(names[:shown])} and {len(names) - shown:,} more"


def _wrapped(text: str, width: int, indent: str, more: str) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=more) or [indent]


def _outcome_lines(outcome: PullResult) -> list[str]:
    lines = ["Chains by outcome:"]
    lines.extend(
        f"  {result.value:<26} {count:>8,}" for result, count in outcome.report.outcomes().items()
    )
    return lines


def _start_lines(outcome: PullResult) -> list[str]:
    return [f"Chains by start: {outcome.report.describe_starts()}"]


def _entity_lines(outcome: PullResult) -> list[str]:
    lines = ["Records by entity:"]
    lines.extend(
        f"  {e.value:<26} {outcome.per_entity.get(e, 0):>8,}"
        for e in report_entities(outcome.report)
    )
    return lines


def _invalid_lines(outcome: PullResult) -> list[str]:
    report = outcome.report
    if not (outcome.invalid_paths or report.invalid):
        return []
    lines = ["Invalid records (kept whole, with the field that does not fit):"]
    lines.extend(
        f"  {e.value:<26} {outcome.invalid_per_entity.get(e, 0):>8,}  "
        f"{outcome.invalid_paths.get(e, outcome.where)}"
        for e in report_entities(report)
        if outcome.invalid_per_entity.get(e)
    )
    return lines


def _failure_lines(outcome: PullResult) -> list[str]:
    """One block per cause: how many connections, the cause, a few of them, the entities."""
    groups = causes(outcome.report)
    failed = {name for g in groups for name in g.connections}
    head = f"Failed connections: {len(failed):,}"
    lines = [f"{head} ({_plural(len(groups), 'cause')})" if groups else head]
    for group in groups:
        count = _plural(len(group.connections), "connection")
        lines.append(f"  {count}: {group.outcome.value} {group.code}")
        request = f" (request_id={group.request_id})" if group.request_id else ""
        if group.message or request:
            lines.extend(_wrapped(f"{group.message}{request}".strip(), WIDTH, "      ", "      "))
        entities = ", ".join(e.value for e in group.entities)
        lines.extend(
            _wrapped(
                f"{_examples(group.connections)}; entities: {entities}", WIDTH, "      ", "      "
            )
        )
    return lines


def _outage_lines(outcome: PullResult) -> list[str]:
    outage = sink_outage(outcome)
    if outage is None:
        return []
    message, stopped = outage
    tail = f" ({_plural(stopped, 'chain')} stopped; rerun to resume)" if stopped else ""
    return [f"sink unavailable: {message}{tail}"]  # one line, whatever its length


def _interrupt_lines(outcome: PullResult) -> list[str]:
    if outcome.interrupted is None:
        return []
    stopped = sum(c.outcome is Outcome.CANCELLED for c in outcome.report.chains)
    return [
        (
            f"Interrupted by {outcome.interrupted}: {_plural(stopped, 'chain')} stopped; "
            "what had landed is kept (rerun to resume)"
        )
    ]


def _total_lines(outcome: PullResult) -> list[str]:
    report = outcome.report
    first = (
        f"Total: {report.records:,} records in {report.pages:,} pages from "
        f"{report.connections_total:,} connections in {report.elapsed:.1f}s "
        f"({report.records_per_second:,.0f} records/s);"
    )
    second = (
        f"       {report.invalid:,} invalid records, {report.retries:,} retries, "
        f"{report.rate_limited:,} rate-limited answers"
    )
    return [first, second]


def _where_lines(outcome: PullResult) -> list[str]:
    lines = [f"Data landed in ({outcome.sink_kind}): {outcome.where}"]
    state = outcome.report.state
    if state is not None:
        lines.append(f"Checkpoint: {state.describe()}")
    lines.extend(f"  {path}" for path in outcome.paths.values())
    return lines


def _tuning_lines(outcome: PullResult) -> list[str]:
    if outcome.tuned is None:
        return []
    return [f"Tuning: {'on' if outcome.tuned else 'off'}"]


#: The summary's sections, in order: each makes its lines from the outcome.
def _unit_lines(outcome: PullResult) -> list[str]:
    """A sharded pull's units: where they ran, and which ran again after a lost worker."""
    if not outcome.units:
        return []
    nodes = {node for _, _, node in outcome.units if node is not None}
    where = f" on {_plural(len(nodes), 'Ray node')}" if nodes else ""
    again = [(unit, attempts) for unit, attempts, _ in outcome.units if attempts > 1]
    line = f"Units: {len(outcome.units):,}{where}"
    if not again:
        return [f"{line}; none ran again"]
    shown = ", ".join(f"{unit} ({attempts} attempts)" for unit, attempts in again[:EXAMPLES])
    more = f" and {len(again) - EXAMPLES} more" if len(again) > EXAMPLES else ""
    lost = f"{_plural(len(again), 'unit')} ran again after a lost worker or node"
    return [f"{line}; {lost}:", *_wrapped(f"{shown}{more}", WIDTH, "  ", "  ")]


def _units_json(outcome: PullResult) -> dict[str, Any] | None:
    if outcome.units is None:
        return None
    nodes: dict[str, int] = {}
    for _, _, node in outcome.units:
        if node is not None:
            nodes[node] = nodes.get(node, 0) + 1
    return {
        "total": len(outcome.units),
        "ran_again": {str(unit): n for unit, n, _ in outcome.units if n > 1},
        "by_node": nodes,
    }


SECTIONS: Final[tuple[Callable[[PullResult], list[str]], ...]] = (
    _outcome_lines,
    _start_lines,
    _entity_lines,
    _invalid_lines,
    _failure_lines,
    _outage_lines,
    _interrupt_lines,
    _total_lines,
    _unit_lines,
    _where_lines,
    _tuning_lines,
)


def summary(outcome: PullResult, tokens: Sequence[str]) -> str:
    """The final report: outcomes, records per entity, failures by cause, totals, where."""
    lines = ["", "Summary", "======="]
    for section in SECTIONS:
        lines.extend(section(outcome))
    return _redact("\n".join(lines), tokens)


def report_entities(report: PullReport) -> list[Entity]:
    return list(dict.fromkeys(c.entity for c in report.chains))


def _group_json(group: FailureGroup) -> dict[str, Any]:
    return {
        "outcome": group.outcome.value,
        "error": group.error_type,
        "code": group.code,
        "cause": group.cause,
        "message": group.message,
        "request_id": group.request_id,
        "connections": len(group.connections),
        "chains": group.chains,
        "examples": list(group.connections[:EXAMPLES]),
        "entities": [e.value for e in group.entities],
    }


def summary_json(outcome: PullResult, tokens: Sequence[str]) -> bytes:
    """The outcome for schedulers: the same facts as the summary, as JSON.

    ``failures`` keeps every failed (connection, reason); ``failure_groups``
    groups them by cause, as the printed summary does.
    """
    report = outcome.report
    outage = sink_outage(outcome)
    data = {
        "ok": report.ok and outcome.interrupted is None and outage is None,
        "interrupted": None if outcome.interrupted is None else {"signal": outcome.interrupted},
        "sink_unavailable": None if outage is None else outage[0],
        "sink": {"kind": outcome.sink_kind, "location": outcome.where},
        "files": {e.value: str(p) for e, p in outcome.paths.items()},
        "invalid_files": {e.value: str(p) for e, p in outcome.invalid_paths.items()},
        "records": report.records,
        "pages": report.pages,
        "invalid": report.invalid,
        "retries": report.retries,
        "rate_limited": report.rate_limited,
        "elapsed_seconds": round(report.elapsed, 3),
        "connections": {
            "total": report.connections_total,
            "done": report.connections_done,
            "failed": report.failed_connections,
        },
        "outcomes": {o.value: n for o, n in report.outcomes().items()},
        "starts": report.starts(),
        "records_by_entity": {e.value: n for e, n in outcome.per_entity.items()},
        "failures": failures(report),
        "failure_groups": [_group_json(g) for g in report.failure_groups()],
        "tuned": outcome.tuned,
        "units": _units_json(outcome),
        "checkpoint": None if report.state is None else report.state.to_json(),
    }
    text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    return (_redact(text, tokens) + "\n").encode()


def _redact(text: str, tokens: Sequence[str]) -> str:
    """Belt and braces: no token may reach the terminal, whatever an error said."""
    for token in tokens:
        if token in text:
            text = text.replace(token, "***")
    return text
