"""A stateful property test of pagination: pages interleaved with inserts, updates, deletes.

Hypothesis drives a listing one page at a time while the mock server's
records change underneath it. Whatever the interleaving, every record that
existed for the whole walk arrives exactly once, and no record arrives twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from makini_async import MakiniPool, set_testing
from makini_async.testing import FaultPlan, MockMakini

TOKEN = "tok_stateful"
ENTITY = "work-orders"


class PaginationUnderWrites(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        set_testing(True)
        self.loop = asyncio.new_event_loop()
        # A few transient faults too: a retried page must not repeat or skip anything.
        self.server = MockMakini(
            records_per_entity=30, faults=FaultPlan(seed=2, error_503=0.1, truncate=0.05)
        )
        self.run(self.server.start())
        self.pool = MakiniPool(base_url=self.server.url, as_dicts=True)
        self.run(self.pool.open())
        self.existing = {r["id"] for r in self.server.records(TOKEN, ENTITY)}
        self.throughout = set(self.existing)  # present from the start and never deleted
        listing = self.pool.connection(TOKEN).list(ENTITY, page_size=4)
        self.pages = listing.pages()
        self.seen: Counter[str] = Counter()
        self.done = False
        self.inserted = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @precondition(lambda self: not self.done)
    @rule()
    def next_page(self) -> None:
        try:
            page = self.run(self.pages.__anext__())
        except StopAsyncIteration:
            self.done = True
            return
        self.seen.update(r["id"] for r in page.records)

    @rule()
    def insert(self) -> None:
        self.inserted += 1
        record = self.server.insert(TOKEN, ENTITY, {"title": f"new {self.inserted}"})
        self.existing.add(record["id"])

    @rule(pick=st.integers(min_value=0, max_value=10_000))
    def update(self, pick: int) -> None:
        if self.existing:
            target = sorted(self.existing)[pick % len(self.existing)]
            self.server.update(TOKEN, ENTITY, target, {"title": f"changed {pick}"})

    @rule(pick=st.integers(min_value=0, max_value=10_000))
    def delete(self, pick: int) -> None:
        if self.existing:
            target = sorted(self.existing)[pick % len(self.existing)]
            self.server.delete(TOKEN, ENTITY, target)
            self.existing.discard(target)
            self.throughout.discard(target)

    @invariant()
    def nothing_twice(self) -> None:
        assert not [rid for rid, n in self.seen.items() if n > 1]

    def teardown(self) -> None:
        try:
            while not self.done:
                self.next_page()
            # Everything that existed for the whole walk arrived, exactly once.
            assert self.throughout <= set(self.seen)
            assert max(self.seen.values(), default=1) == 1
        finally:
            self.run(self.pages.aclose())  # type: ignore[attr-defined]
            self.run(self.pool.close())
            self.run(self.server.close())
            self.loop.close()
            set_testing(False)


PaginationUnderWrites.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None
)
TestPaginationUnderWrites = PaginationUnderWrites.TestCase
