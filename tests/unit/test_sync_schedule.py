"""The sync's schedule: phases spread over the interval, jitter, backoff, triggers, pauses."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from makini_async.sync import Schedule, phase_of
from makini_async.sync._schedule import MAX_BACKOFF


def keys(n: int) -> list[tuple[str, str]]:
    return [(f"conn-{i:05d}", "work-orders") for i in range(n)]


def test_phases_spread_ten_thousand_connections_evenly_and_stay_put() -> None:
    every = 900.0
    phases = [phase_of(k, every) for k in keys(10_000)]
    assert all(0 <= p < every for p in phases)
    per_second = Counter(int(p) for p in phases)
    assert max(per_second.values()) <= 30  # about 11 a second, never a herd
    assert len(per_second) > 890
    assert phase_of(("conn-00001", "work-orders"), every) == phases[1]  # every process, every run


def test_new_keys_start_on_their_phase_and_keys_without_state_at_once() -> None:
    s = Schedule(100.0, jitter=0.0)
    s.add(("a", "assets"), now=1000.0)
    s.add(("b", "assets"), now=1000.0, at_once=True)
    assert s.due(1000.0) == [("b", "assets")]
    first = s.next_due()
    assert first is not None
    assert 1000.0 <= first < 1100.0
    assert s.due(first) == [("a", "assets")]


def test_a_key_never_overlaps_itself_and_a_trigger_while_running_pulls_it_once_more() -> None:
    s = Schedule(60.0, jitter=0.0)
    key = ("a", "assets")
    s.add(key, 0.0, at_once=True)
    assert s.due(0.0) == [key]
    assert s.trigger(key, 1.0)
    assert s.trigger(key, 1.5)  # coalesced
    assert s.due(100.0) == []  # running: never twice at once
    s.finished(key, 2.0, ok=True)
    assert s.due(2.0) == [key]  # the coalesced trigger, once
    s.finished(key, 3.0, ok=True)
    nxt = s.next_due()
    assert nxt is not None  # back on its phase, between half an interval and one and a half on
    assert 3.0 + 30.0 <= nxt < 3.0 + 90.0
    assert (nxt - phase_of(key, 60.0)) % 60.0 == pytest.approx(0.0, abs=1e-6)
    assert s.due(nxt - 0.001) == []
    assert s.due(nxt) == [key]


def test_a_failing_key_backs_off_on_its_own() -> None:
    s = Schedule(10.0, jitter=0.0)
    bad, good = ("bad", "assets"), ("good", "assets")
    s.add(bad, 0.0, at_once=True)
    s.add(good, 0.0, at_once=True)
    now = 0.0
    delays = []
    for _ in range(6):
        assert bad in s.due(now)
        s.finished(bad, now, ok=False)
        nxt = s.next_due()
        assert nxt is not None
        delays.append(s._entries[bad].due - now)
        now = s._entries[bad].due
    assert delays == [10.0, 20.0, 40.0, 80.0, 80.0, 80.0]
    assert delays[-1] == MAX_BACKOFF * 10.0
    s.finished(bad, now, ok=True)  # a success resets it: back on its interval
    assert 5.0 <= s._entries[bad].due - now < 15.0


def test_jitter_stays_within_its_share_of_the_interval() -> None:
    s = Schedule(100.0, jitter=0.05, rng=random.Random(7))
    for i, key in enumerate(keys(200)):
        s.add(key, 0.0, at_once=True)
        s.due(0.0)
        s.finished(key, float(i), ok=True)
        on_phase = (
            phase_of(key, 100.0) + math.ceil((i + 50.0 - phase_of(key, 100.0)) / 100.0) * 100.0
        )
        assert on_phase - 5.0 <= s._entries[key].due <= on_phase + 5.0


def test_pause_and_resume() -> None:
    s = Schedule(10.0, jitter=0.0)
    key = ("a", "assets")
    s.add(key, 0.0, at_once=True)
    s.pause(key)
    assert s.due(1000.0) == []
    assert not s.trigger(key, 5.0)
    s.resume(key, 7.0)
    assert s.due(7.0) == [key]


def test_a_key_another_instance_holds_is_tried_soon_once_then_on_its_interval() -> None:
    s = Schedule(60.0, jitter=0.0)
    key = ("a", "assets")
    s.add(key, 0.0, at_once=True)
    s.due(0.0)
    s.not_run(key, 0.0)
    assert s.retrying == {key}
    assert s.due(2.0) == [key]
    s.not_run(key, 2.0)
    assert s.retrying == set()
    assert s.due(61.0) == []
    assert s.due(62.0) == [key]


def test_the_heap_stays_within_twice_the_keys_whatever_the_triggers() -> None:
    s = Schedule(60.0)
    for key in keys(100):
        s.add(key, 0.0)
    for i in range(10_000):
        s.trigger(keys(100)[i % 100], float(i))
        assert s.heap_size <= 2 * len(s) + 64
    s.remove(keys(100)[0])
    assert len(s) == 99


def test_a_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="every"):
        Schedule(0.0)
