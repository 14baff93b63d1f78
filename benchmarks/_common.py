"""Shared helpers: the mock server in its own processes, CPU pinning, statistics."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SERVER_READY = "Mock Makini listening on"


_EVENTS = re.compile(r"^events:\s+(.*)$", re.MULTILINE)
_SUMMARY = re.compile(r"^summary:\s+(.*)$", re.MULTILINE)


def cachegrind_events(text: str, what: str = "run") -> dict[str, int]:
    """Every event total of a cachegrind output file (``Ir``, ``I1mr``, ``D1mr``, ...)."""
    names = _EVENTS.search(text)
    found = _SUMMARY.search(text)
    if names is None or found is None:
        raise RuntimeError(f"{what}: no totals in cachegrind's output")
    return dict(zip(names.group(1).split(), map(int, found.group(1).split()), strict=False))


def under_cachegrind(args: list[str], *, cache_sim: bool, what: str) -> tuple[dict[str, int], str]:
    """``python *args`` under valgrind's cachegrind: its event totals and its standard output."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cachegrind.out"
        cmd = ["valgrind", "--tool=cachegrind", f"--cache-sim={'yes' if cache_sim else 'no'}"]
        cmd += [f"--cachegrind-out-file={out}", sys.executable, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
        text = out.read_text() if out.exists() else ""
    if done.returncode != 0:
        raise RuntimeError(f"{what}: {done.stderr[-2000:]}")
    return cachegrind_events(text, what), done.stdout


def instructions_per_step(module: str, args: list[str], few: int, many: int) -> float | None:
    """User-space instructions one step costs: ``python -m module *args N`` under valgrind.

    Run twice (``N`` = ``few``, then ``many``; cachegrind with no cache
    simulation), the difference over ``many - few`` steps leaves start-up
    out. ``None`` when valgrind is not installed. A child inherits this
    process's cores.
    """
    if shutil.which("valgrind") is None:
        return None
    counts = [
        under_cachegrind(["-m", module, *args, str(steps)], cache_sim=False, what=module)[0]["Ir"]
        for steps in (few, many)
    ]
    return (counts[1] - counts[0]) / (many - few)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def plan_cpus(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(client cpus, server cpus): the client gets one core, the servers the rest."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.pop("PYTEST_CURRENT_TEST", None)  # the library shortens waits under pytest
    out["PYTHONHASHSEED"] = "0"
    return out


class ServerURL(str):
    """The mock server's URL; ``pgid`` is its process group (the server and its workers)."""

    pgid: int


def _stat(pid: int | str) -> list[str] | None:
    """``/proc/PID/stat`` after the command's closing parenthesis, or None if it is gone.

    Index 2 is the process group; 11-14 are utime, stime, cutime and cstime in clock ticks.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def process_cpu_seconds(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system) of one live process, with its reaped children's if asked."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return sum(int(f) for f in fields[11 : 15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of one process group."""
    total = 0
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields is not None and int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def mock_server(
    *,
    records: int,
    processes: int = 1,
    latency: float = 0.0,
    error_500: float = 0.0,
    rate_limit_429: float = 0.0,
    retry_after: float = 0.0,
    cpus: set[int] | None = None,
    extra: Sequence[str] = (),
) -> Iterator[ServerURL]:
    """Run ``python -m makini_async.testing`` in its own process(es); yield its URL."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "makini_async.testing",
        "--port",
        str(port),
        "--processes",
        str(processes),
        "--records",
        str(records),
        "--latency",
        str(latency),
        "--error-500",
        str(error_500),
        "--rate-limit-429",
        str(rate_limit_429),
        "--retry-after",
        str(retry_after),
        *extra,
    ]

    def pin() -> None:  # runs in the child before exec; spawned workers inherit it
        if cpus:
            os.sched_setaffinity(0, cpus)

    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env(),
        cwd=str(ROOT),
        preexec_fn=pin if cpus else None,  # noqa: PLW1509 - no threads started yet here
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or SERVER_READY in line:
                break
        if SERVER_READY not in line:
            msg = f"mock server did not start (exit code {proc.poll()})"
            raise RuntimeError(msg)
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        url = ServerURL(f"http://127.0.0.1:{port}")
        url.pgid = proc.pid  # start_new_session: the server leads its own group
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def run_contender(args: Sequence[str], *, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``python -m benchmarks.contenders ARGS`` in a fresh process; parse its JSON line."""
    cmd = [sys.executable, "-m", "benchmarks.contenders", *args]
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=env(),
            cwd=str(ROOT),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "completeness": 0.0}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    tail = (done.stderr or done.stdout)[-2000:]
    return {"error": f"exit code {done.returncode}: {tail}", "completeness": 0.0}


def median_range(values: Sequence[float]) -> dict[str, float]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def machine() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    info["library"] = library_version()
    for mod in ("aiohttp", "httpx", "orjson", "makini_async"):
        with contextlib.suppress(Exception):
            import importlib.metadata as md

            info[mod] = md.version(mod.replace("_", "-"))
    return info


def library_version() -> dict[str, Any]:
    """Which makini_async was measured: git commit, uncommitted changes, a source hash."""
    import hashlib

    out: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=str(ROOT),
            timeout=10,
            check=False,
        )
        out["commit"] = head.stdout.strip() or None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "makini_async"],
            capture_output=True,
            text=True,
            cwd=str(ROOT),
            timeout=10,
            check=False,
        )
        out["uncommitted_library_changes"] = bool(dirty.stdout.strip())
    digest = hashlib.sha256()
    for path in sorted((ROOT / "makini_async").rglob("*.py")):
        digest.update(path.read_bytes())
    out["source_sha256"] = digest.hexdigest()[:12]
    return out
