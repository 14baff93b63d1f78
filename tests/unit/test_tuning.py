"""quiet_gc(), steady_heap(), tuned(): opt-in, process-wide, restored on exit, nested or not."""

from __future__ import annotations

import gc
import platform
import sys

import pytest

from makini_async import UsageError
from makini_async.tuning import (
    DEFAULT_SWITCH_INTERVAL,
    DEFAULT_THRESHOLD,
    owned,
    quick_switch,
    quiet_gc,
    run_tuned,
    steady_heap,
    tuned,
)
from makini_async.tuning import active as tuning_active
from tests.fakes import run_fresh

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


# Run in a fresh interpreter: how glibc serves a block depends on the free chunks the
# process already has, and only a young heap has none big enough to reuse.
_PROBE = """
import ctypes, gc, json, sys
from makini_async.tuning import steady_heap, tuned

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def mmapped(size):
    # How many more blocks glibc serves with mmap while a size-byte object lives.
    before = libc.mallinfo2().hblks
    block = bytearray(size)
    during = libc.mallinfo2().hblks
    del block
    return during - before

def kept_mib():
    # Heap still held after 40 MiB of small blocks are freed.
    blocks = [bytearray(2000) for _ in range(20000)]
    del blocks
    return libc.mallinfo2().arena >> 20

out = {}
with (steady_heap() if sys.argv[1] == "steady" else tuned()) as applied:
    out["applied"] = applied
    out["inside"] = mmapped(1 << 20)
    with steady_heap(mmap_threshold=1):  # nested: changes nothing more
        out["nested"] = mmapped(1 << 20)
    out["gc_inside"] = gc.get_freeze_count() > 0
    out["kept_inside"] = kept_mib()
out["heap_after_exit"] = libc.mallinfo2().arena >> 20
out["after"] = mmapped(1 << 20)
out["after_2mib"] = mmapped(2 << 20)
out["gc_after"] = gc.get_freeze_count() > 0
print(json.dumps(out))
"""


def _probe(mode: str, **env: str) -> dict[str, object]:
    return run_fresh(_PROBE, mode, env=env)


def test_quiet_gc_freezes_raises_the_threshold_and_restores_both() -> None:
    before = gc.get_threshold()
    with quiet_gc(threshold=12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > 0
        with quiet_gc(threshold=99):  # nested: changes nothing more
            assert gc.get_threshold()[0] == 12_345
        assert gc.get_threshold()[0] == 12_345
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_quiet_gc_restores_on_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), quiet_gc():
        raise RuntimeError
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "700"])
def test_quiet_gc_refuses_a_threshold_that_is_not_a_positive_int(bad: object) -> None:
    with pytest.raises(UsageError, match="positive int"), quiet_gc(bad):  # type: ignore[arg-type]
        pass  # pragma: no cover
    assert gc.get_freeze_count() == 0


async def test_a_pull_under_quiet_gc_delivers_everything(make_pool: object) -> None:
    from tests.fakes import Call, page

    def handler(call: Call) -> object:
        return page([{"id": f"a{i}"} for i in range(50)], None)

    with quiet_gc():
        async with make_pool(handler, as_dicts=True) as (pool, _):  # type: ignore[operator]
            got = [item.record["id"] async for item in pool.pull("assets", ["t1", "t2"])]
    assert len(got) == 100
    assert gc.get_freeze_count() == 0


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_steady_heap_serves_big_blocks_from_the_heap_and_restores_the_defaults() -> None:
    # 1 MiB: above glibc's 128 KiB default (as restored: fixed, no longer raised
    # by glibc as blocks are freed), under the 4 MiB threshold while tuned.
    got = _probe("steady")
    assert got["applied"] is True
    assert (got["inside"], got["nested"], got["after"]) == (0, 0, 1)
    assert got["gc_inside"] is False
    # Freed heap is kept within the block (40 MiB < the 64 MiB trim threshold) and
    # handed back on exit (malloc_trim).
    assert isinstance(got["kept_inside"], int)
    assert got["kept_inside"] >= 30
    assert isinstance(got["heap_after_exit"], int)
    assert got["heap_after_exit"] < 10


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_steady_heap_restores_the_thresholds_the_process_started_with() -> None:
    # An 8 MiB mmap threshold from the environment is what exit restores, not 128 KiB.
    got = _probe("steady", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=8388608")
    assert (got["inside"], got["after"], got["after_2mib"]) == (0, 0, 0)
    got = _probe("steady", MALLOC_MMAP_THRESHOLD_="1572864")
    assert (got["after"], got["after_2mib"]) == (0, 1)


@pytest.mark.skipif(GLIBC, reason="what other C libraries get")
def test_steady_heap_does_nothing_off_glibc() -> None:  # pragma: no cover - glibc CI
    with steady_heap() as applied:
        assert applied is False


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "64", 2**31, 2**64])
def test_steady_heap_refuses_sizes_that_are_not_positive_ints(bad: object) -> None:
    with pytest.raises(UsageError, match="trim_threshold must be a positive int"):
        with steady_heap(trim_threshold=bad):  # type: ignore[arg-type]
            pass  # pragma: no cover
    with pytest.raises(UsageError, match="mmap_threshold must be a positive int"):
        with steady_heap(mmap_threshold=bad):  # type: ignore[arg-type]
            pass  # pragma: no cover


def test_quick_switch_shortens_the_interval_and_restores_it_nested_or_on_an_error() -> None:
    before = sys.getswitchinterval()
    with quick_switch(0.002):
        assert sys.getswitchinterval() == pytest.approx(0.002)
        with quick_switch(0.0001):  # nested: the outer block's interval stays
            assert sys.getswitchinterval() == pytest.approx(0.002)
        assert sys.getswitchinterval() == pytest.approx(0.002)
    assert sys.getswitchinterval() == before
    with pytest.raises(RuntimeError), quick_switch():
        assert sys.getswitchinterval() == pytest.approx(DEFAULT_SWITCH_INTERVAL)
        raise RuntimeError
    assert sys.getswitchinterval() == before


@pytest.mark.parametrize("bad", [0, -1, True, "1", None])
def test_quick_switch_refuses_an_interval_that_is_not_a_positive_number(bad: object) -> None:
    with pytest.raises(UsageError, match="interval must be a positive number"):
        with quick_switch(bad):  # type: ignore[arg-type]
            pass  # pragma: no cover


def test_tuned_is_all_three_and_restores_them() -> None:
    before = gc.get_threshold()
    interval = sys.getswitchinterval()
    with tuned():
        assert gc.get_threshold()[0] != before[0]
        assert gc.get_freeze_count() > 0
        assert sys.getswitchinterval() == pytest.approx(DEFAULT_SWITCH_INTERVAL)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert sys.getswitchinterval() == interval
    if GLIBC:
        got = _probe("tuned")
        assert (got["inside"], got["after"]) == (0, 1)
        assert (got["gc_inside"], got["gc_after"]) == (True, False)


def test_owned_tunes_only_when_enabled_and_active_observes_it() -> None:
    before = (gc.get_threshold(), gc.get_freeze_count())
    assert not tuning_active()
    with owned(enabled=False) as on:
        assert on is False
        assert not tuning_active()
        assert (gc.get_threshold(), gc.get_freeze_count()) == before
    with owned() as on:
        assert on is True
        assert tuning_active()
        assert gc.get_threshold()[0] == DEFAULT_THRESHOLD
    assert not tuning_active()
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_run_tuned_runs_the_main_tuned_and_says_so() -> None:
    async def main() -> int:
        return gc.get_threshold()[0]

    assert run_tuned(main()) == (DEFAULT_THRESHOLD, True)
    threshold, on = run_tuned(main(), enabled=False)
    assert on is False
    assert threshold < DEFAULT_THRESHOLD


def test_active_in_a_process_never_tuned_is_false() -> None:
    # A fresh interpreter: nothing saved yet by any block (a long-lived test process has).
    got = run_fresh(
        "import json; from makini_async.tuning import active, tuned\n"
        "before = active()\n"
        "with tuned():\n    inside = active()\n"
        "print(json.dumps({'before': before, 'inside': inside, 'after': active()}))"
    )
    assert got == {"before": False, "inside": True, "after": False}


def test_a_refused_change_holds_nothing_and_the_next_block_tries_again() -> None:
    from makini_async.tuning import _Outermost

    state = _Outermost()
    undone: list[str] = []
    with state.block(lambda: None) as applied:  # refused (as glibc's mallopt may refuse)
        assert applied is False
        assert state.depth == 0
    assert undone == []
    with state.block(lambda: lambda: undone.append("outer")) as applied:
        assert applied is True
        with state.block(lambda: lambda: undone.append("inner")) as nested:
            assert nested is True  # held by the outer block, not changed again
            assert state.depth == 2
    assert undone == ["outer"]
    assert state.depth == 0
