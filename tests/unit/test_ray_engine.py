"""RayEngine's checks, what a unit needs from a node, and the summary of a sharded pull's units."""

from __future__ import annotations

import types
from typing import Any

import orjson
import pytest

from makini_async.bulk import ChainReport, Outcome, PullReport
from makini_async.cli._run import PullResult
from makini_async.cli._summary import summary, summary_json
from makini_async.entities import Entity
from makini_async.errors import UsageError
from makini_async.scale import RayEngine
from makini_async.scale import _ray as ray_engine
from makini_async.scale._ray import _needs, _NodeWatch, _runnable


def test_options_the_engine_sets_itself_are_refused() -> None:
    with pytest.raises(UsageError, match="task_options cannot set max_retries, name"):
        RayEngine(task_options={"name": "x", "max_retries": 9})
    with pytest.raises(UsageError, match="node_wait must be"):
        RayEngine(node_wait=0)
    engine = RayEngine("ray://head:10001", task_options={"resources": {"pullers": 1}})
    assert engine.task_options == {"resources": {"pullers": 1}}
    assert "head:10001" in repr(engine)


def test_a_unit_needs_one_cpu_unless_told_and_every_resource_it_names() -> None:
    assert _needs({}) == {"CPU": 1.0}
    assert _needs({"num_cpus": 0, "resources": {"pullers": 2}}) == {"pullers": 2.0}
    assert _needs({"num_cpus": 2, "num_gpus": 1}) == {"CPU": 2.0, "GPU": 1.0}


def test_only_a_live_node_offering_every_resource_can_run_a_unit() -> None:
    needs = {"CPU": 1.0, "pullers": 1.0}
    dead = {"Alive": False, "Resources": {"CPU": 4.0, "pullers": 1.0}}
    short = {"Alive": True, "Resources": {"CPU": 4.0}}
    assert not _runnable([dead, short], needs)
    assert _runnable([dead, short, {"Alive": True, "Resources": {"CPU": 1, "pullers": 3}}], needs)
    assert not _runnable([], {"CPU": 1.0})


def _result(units: tuple[tuple[int, int, str | None], ...]) -> PullResult:
    chain = ChainReport(connection="a", entity=Entity.ASSETS, outcome=Outcome.COMPLETED)
    report = PullReport([chain], clock=lambda: 1.0)
    return PullResult(report, "db", {}, {Entity.ASSETS: 0}, {}, {}, "postgresql", units=units)


def test_the_summary_says_where_units_ran_and_which_ran_again() -> None:
    units = ((0, 1, "n1"), (1, 3, "n2"), (2, 2, "n2"), (3, 1, "n1"))
    text = summary(_result(units), [])
    assert "Units: 4 on 2 Ray nodes; 2 units ran again after a lost worker or node:" in text
    assert "1 (3 attempts), 2 (2 attempts)" in text
    data = orjson.loads(summary_json(_result(units), []))
    assert data["units"] == {
        "total": 4,
        "ran_again": {"1": 3, "2": 2},
        "by_node": {"n1": 2, "n2": 2},
    }
    local = summary(_result(((0, 1, None), (1, 1, None))), [])
    assert "Units: 2; none ran again" in local
    assert "Units:" not in summary(_result(()), [])
    assert orjson.loads(summary_json(_result(()), []))["units"] is not None


grpc = pytest.importorskip("grpc")


class _Unavailable(grpc.RpcError):  # type: ignore[misc]
    """What Ray Client lets through from a few calls once its server is gone."""

    def code(self) -> Any:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "Stream removed (recvmsg:Connection reset by peer (104))"


class _GoneRay:
    """Ray Client after its head died: started units, then every call fails in gRPC."""

    class exceptions:  # noqa: N801 - shaped like the ray module
        RayError = type("RayError", (Exception,), {})

    def __init__(self, fails: str) -> None:
        self.fails = fails
        self.cancelled: list[object] = []

    def _maybe_fail(self, call: str) -> None:
        if call == self.fails:
            raise _Unavailable

    def nodes(self) -> list[dict[str, Any]]:
        self._maybe_fail("nodes")
        return [{"Alive": True, "Resources": {"CPU": 2.0}}]

    def wait(self, refs: list[object], **_: Any) -> tuple[list[object], list[object]]:
        self._maybe_fail("wait")
        return [], refs

    def get(self, _ref: object, **_: Any) -> list[object]:
        self._maybe_fail("get")
        return []

    def is_initialized(self) -> bool:
        return True

    def cancel(self, ref: object, **_: Any) -> None:
        self.cancelled.append(ref)
        raise _Unavailable

    def kill(self, _actor: object) -> None:
        raise _Unavailable


class _Events:
    def __init__(self) -> None:
        self.lost: dict[int, str] = {}

    def progress(self, message: object) -> None:
        raise AssertionError(message)

    def finished(self, result: object) -> None:
        raise AssertionError(result)

    def lost_(self, unit: int, error: BaseException) -> None:
        self.lost[unit] = str(error)


async def test_a_node_list_lost_in_grpc_leaves_the_units_waiting() -> None:
    # The cluster's state is unknown, not known to be gone: the next wait decides.
    watch = _NodeWatch(_GoneRay(fails="nodes"), {"CPU": 1.0}, wait=0.001)
    assert await watch.stranded() is None


@pytest.mark.parametrize("fails", ["wait", "get"])
async def test_a_server_gone_in_grpc_ends_every_unit_as_lost_never_raising_it(
    fails: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = _GoneRay(fails)
    task = types.SimpleNamespace(
        options=lambda **_: types.SimpleNamespace(remote=lambda job, inbox: object())
    )
    inbox = types.SimpleNamespace(take=types.SimpleNamespace(remote=object))
    monkeypatch.setattr(ray_engine, "_remote", lambda: (task, None))
    monkeypatch.setattr(RayEngine, "_inbox", staticmethod(lambda ray, cls: inbox))
    engine = RayEngine(workers=1)
    jobs: Any = [types.SimpleNamespace(unit=n) for n in range(4)]
    events = _Events()
    events_api: Any = types.SimpleNamespace(
        progress=events.progress, finished=events.finished, lost=events.lost_
    )
    await engine._run(ray, jobs, events_api)
    assert sorted(events.lost) == [0, 1, 2, 3]
    for why in events.lost.values():
        assert "lost the Ray cluster (UNAVAILABLE: Stream removed" in why
        assert "_InactiveRpcError" not in why
        assert "\n" not in why
    assert len(ray.cancelled) == 0  # nothing to cancel on a cluster that is gone
