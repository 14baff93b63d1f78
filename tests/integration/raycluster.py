"""A real multi-node Ray cluster on this machine, started and stopped with the ``ray`` CLI.

Each node is one ``ray start`` in a session of its own, so every process it
spawns (raylet, agents, workers: Ray renames them, but they keep the
session) is found by its session id, and only the processes this cluster
started are ever killed. Token authentication is on (``RAY_AUTH_MODE=token``),
as a production cluster runs; health checks are quick so a lost node is
noticed in about two seconds.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs

RAY = str(Path(sys.executable).with_name("ray"))
_FAST_HEALTH = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class Node:
    session: int
    node_id: str
    raylet: int


def _session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[3])  # field 6: the session id


def _processes(session: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _session_of(int(entry.name)) == session
    ]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


class LocalCluster:
    """A head and worker nodes; ``address`` is the Ray Client address (``ray://...``)."""

    def __init__(self, root: Path) -> None:
        self.root = root  # short: Ray's unix sockets live under it (107 bytes at most)
        self.token = secrets.token_hex(32)
        self.gcs_port = free_port()
        self.client_port = free_port()
        self.dashboard_port = free_port()
        self.nodes: list[Node] = []
        self.head: Node | None = None

    @property
    def address(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self) -> dict[str, str]:
        """What a driver needs to talk to this cluster (its auth token)."""
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def _start(self, args: list[str]) -> Node:
        before = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
        env = {**self.env(), **_FAST_HEALTH, "RAY_USAGE_STATS_ENABLED": "0"}
        start = subprocess.Popen(
            [RAY, "start", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out, _ = start.communicate(timeout=120)
        if start.returncode != 0:
            self._kill_session(start.pid)
            msg = f"ray start failed:\n{out.decode(errors='replace')[-3000:]}"
            raise RuntimeError(msg)
        for _ in range(100):
            for pid in _processes(start.pid):
                if pid in before:
                    continue
                line = _cmdline(pid)
                if line and line[0].endswith("/raylet"):
                    node_id = next(a for a in line if a.startswith("--node_id=")).split("=")[1]
                    node = Node(start.pid, node_id, pid)
                    self.nodes.append(node)
                    return node
            time.sleep(0.1)
        self._kill_session(start.pid)
        raise RuntimeError("ray start left no raylet")

    def start_head(self, *, num_cpus: int = 1) -> Node:
        self.head = self._start(
            [
                "--head",
                f"--port={self.gcs_port}",
                f"--ray-client-server-port={self.client_port}",
                f"--dashboard-port={self.dashboard_port}",
                "--dashboard-host=127.0.0.1",
                "--include-dashboard=true",
                f"--num-cpus={num_cpus}",
                f"--temp-dir={self.root}",
                "--disable-usage-stats",
            ]
        )
        return self.head

    def add_node(self, *, num_cpus: int = 1, resources: str | None = None) -> Node:
        args = [f"--address=127.0.0.1:{self.gcs_port}", f"--num-cpus={num_cpus}"]
        if resources is not None:
            args.append(f"--resources={resources}")
        return self._start(args)

    def node_of(self, pid: int) -> Node | None:
        """The node a process (a Ray worker running a unit) belongs to."""
        session = _session_of(pid)
        return next((n for n in self.nodes if n.session == session), None)

    def kill_raylet(self, node: Node) -> None:
        """SIGKILL the node's raylet only (its running workers may finish their task)."""
        os.kill(node.raylet, signal.SIGKILL)

    def kill_node(self, node: Node) -> None:
        """SIGKILL every process of the node at once, as a machine that dies."""
        self._kill_session(node.session)

    def _kill_session(self, session: int) -> None:
        for pid in _processes(session):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Kill every process of every node this cluster started, and only those."""
        for node in reversed(self.nodes):
            self._kill_session(node.session)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_processes(n.session) for n in self.nodes):
            time.sleep(0.1)

    def run(self, *args: str, timeout: float = 60) -> Any:
        """A ``ray`` CLI command against this cluster (``ray list tasks``, for example)."""
        return subprocess.run(
            [RAY, *args],
            env=self.env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def logs(self) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.is_file() and not p.is_symlink()]
