"""Group commit: batches bounded by rows and time, back-pressure, failures kept to their chains."""

from __future__ import annotations

import asyncio

import pytest

from makini_async.entities import Entity
from makini_async.errors import SinkError, SinkUnavailable
from makini_async.sinks._group import GroupCommit, Lanes, Pending

WO = Entity.WORK_ORDERS


def page(connection: str, n: int, rows: int = 10) -> Pending:
    return Pending(connection, WO, rows, rows * 100, n)


class Destination:
    """A commit function recording each batch; told which payloads to refuse."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.refuse: set[tuple[str, int]] = set()
        self.down = False
        self.delay = delay
        self.running = 0
        self.most_running = 0

    async def commit(self, batch: list[Pending]) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.down:
                raise SinkUnavailable("sink unavailable: the database is away")
            keys = [(p.connection, p.payload) for p in batch]
            if self.refuse & set(keys):
                raise SinkError("row refused")
            self.batches.append(keys)
        finally:
            self.running -= 1

    def landed(self) -> list[tuple[str, int]]:
        return [key for batch in self.batches for key in batch]


async def test_pages_are_committed_together_up_to_max_rows() -> None:
    dest = Destination()
    group = GroupCommit(dest.commit, max_rows=50, max_delay=10.0)
    for n in range(20):
        await group.add(page(f"c{n % 4}", n))
    await group.close()
    assert dest.landed() == [(f"c{n % 4}", n) for n in range(20)]
    assert len(dest.batches) == 4  # 5 pages of 10 rows each
    assert all(len(b) == 5 for b in dest.batches)


async def test_a_batch_short_of_max_rows_commits_after_max_delay() -> None:
    dest = Destination()
    group = GroupCommit(dest.commit, max_rows=1000, max_delay=0.05)
    await group.add(page("a", 1))
    await asyncio.sleep(0.01)
    assert dest.batches == []  # still waiting for more pages
    await asyncio.sleep(0.15)
    assert dest.batches == [[("a", 1)]]
    await group.close()


async def test_a_full_batch_waits_while_the_previous_one_commits() -> None:
    dest = Destination(delay=0.05)
    group = GroupCommit(dest.commit, max_rows=10, max_delay=10.0)
    await group.add(page("a", 1))  # full: handed to the committer
    await asyncio.sleep(0)
    await group.add(page("a", 2))  # full again, while the first commits
    waiting = asyncio.create_task(group.add(page("a", 3)))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # back-pressure: at most two batches held
    await waiting
    await group.close()
    assert dest.landed() == [("a", 1), ("a", 2), ("a", 3)]
    assert dest.most_running == 1


async def test_a_refused_page_fails_only_its_chain_and_its_later_pages_never_land() -> None:
    dest = Destination()
    dest.refuse = {("bad", 2)}
    failed: list[tuple[str, str]] = []
    group = GroupCommit(dest.commit, max_rows=1000, max_delay=10.0)
    group.report_failures(lambda c, e, err: failed.append((c, err.message)))
    for n in range(6):
        await group.add(page("bad" if n % 2 == 0 else "good", n))
    await group.flush()
    # The batch failed whole, then each page alone: bad's page 0 lands, 2 fails, 4 is dropped.
    assert dest.landed() == [("bad", 0), ("good", 1), ("good", 3), ("good", 5)]
    assert failed == [("bad", "row refused")]
    with pytest.raises(SinkError, match="row refused") as caught:
        await group.add(page("bad", 6))
    assert caught.value.connection == "bad"
    await group.add(page("good", 7))  # the other chain goes on
    await group.close()
    assert dest.landed()[-1] == ("good", 7)


async def test_a_destination_down_fails_every_chain_of_the_batch_and_every_later_page() -> None:
    dest = Destination()
    dest.down = True
    failed: list[str] = []
    group = GroupCommit(dest.commit, max_rows=1000, max_delay=10.0)
    group.report_failures(lambda c, e, err: failed.append(c))
    await group.add(page("a", 1))
    await group.add(page("b", 2))
    with pytest.raises(SinkUnavailable):
        await group.flush()
    assert sorted(failed) == ["a", "b"]
    with pytest.raises(SinkUnavailable) as caught:
        await group.add(page("c", 3))
    assert caught.value.connection == "c"
    with pytest.raises(SinkUnavailable):
        await group.close()


async def test_a_failure_told_to_no_one_is_raised_by_flush() -> None:
    dest = Destination()
    dest.refuse = {("a", 1)}
    group = GroupCommit(dest.commit, max_rows=1000, max_delay=10.0)
    await group.add(page("a", 1))
    with pytest.raises(SinkError, match="row refused"):
        await group.flush()
    await group.close()


async def test_an_unexpected_error_in_commit_fails_the_chains_and_never_hangs_a_flush() -> None:
    async def broken(batch: list[Pending]) -> None:
        raise ZeroDivisionError

    group = GroupCommit(broken, max_rows=1000, max_delay=10.0)
    await group.add(page("a", 1))
    with pytest.raises(SinkError, match="unexpected ZeroDivisionError"):
        await asyncio.wait_for(group.flush(), 2)
    await group.close()


async def test_lanes_keep_a_chain_in_order_and_commit_side_by_side() -> None:
    dest = Destination(delay=0.02)
    lanes = Lanes(dest.commit, lanes=2, max_rows=10, max_delay=10.0)
    for n in range(40):
        await lanes.add(page(f"c{n % 8}", n))
    await lanes.close()
    landed = dest.landed()
    assert sorted(landed) == sorted((f"c{n % 8}", n) for n in range(40))
    for c in range(8):
        mine = [n for conn, n in landed if conn == f"c{c}"]
        assert mine == sorted(mine)
    assert dest.most_running == 2


async def test_a_destination_lost_while_isolating_fails_only_the_pages_not_yet_committed() -> None:
    dest = Destination()
    dest.refuse = {("a", 1)}
    failed: list[str] = []
    group = GroupCommit(dest.commit, max_rows=1000, max_delay=10.0)
    group.report_failures(lambda c, e, err: failed.append(c))
    calls = 0
    commit = dest.commit

    async def flaky(batch: list[Pending]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the whole batch, page "b" alone, then the database goes away
            dest.down = True
        await commit(batch)

    group._commit = flaky  # type: ignore[method-assign]
    for key in (("b", 0), ("a", 1), ("c", 2)):
        await group.add(page(*key))
    with pytest.raises(SinkUnavailable):
        await group.flush()
    await asyncio.sleep(0)
    assert dest.landed() == [("b", 0)]
    assert sorted(failed) == ["a", "c"]  # "b" landed: its chain is not failed
    with pytest.raises(SinkUnavailable):
        await group.close()
