"""When each (connection, entity) of a sync is pulled next: a phase each, jitter, backoff.

Every key has a *phase*: a stable hash of its name spread over the interval,
so that 10,000 connections on a 15-minute schedule start about 11 a second,
never together, in every instance and after every restart. A key is pulled
again one interval after its last start (on its phase, plus a little
jitter); a failing one backs off on its own: one interval, then 2, 4 and at
most 8. A key never overlaps itself: a trigger (a webhook) for a key that is
being pulled pulls it once more as soon as it ends.

The schedule is pure (no I/O, no task): the service asks it what is due at
its clock's time. Memory is one small entry a key; the heap is rebuilt when
stale entries pile up, so it stays within twice the number of keys.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from typing import Final

import attrs

__all__ = ["MAX_BACKOFF", "Key", "Schedule", "phase_of"]

#: (connection name, entity path name).
Key = tuple[str, str]

#: A failing key is pulled again after at most this many intervals.
MAX_BACKOFF: Final = 8
_PERSON: Final = b"makini-sync"


def phase_of(key: Key, every: float) -> float:
    """Where in the interval ``key`` starts: the same in every process and run."""
    digest = hashlib.blake2b("\0".join(key).encode(), digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") / 2**64 * every


@attrs.define(slots=True)
class _Entry:
    due: float
    #: Bumped at every reschedule: heap items of an older generation are stale.
    generation: int = 0
    running: bool = False
    #: A trigger came while it ran: pull it again at once when it ends.
    again: bool = False
    paused: bool = False
    failures: int = 0
    #: Times in a row it was due and not started (another instance, or a row lock).
    skips: int = 0


class Schedule:
    """The next time of every key; ``due(now)`` hands out what is due, in time order."""

    def __init__(self, every: float, *, jitter: float = 0.05, rng: random.Random | None = None):
        if not every > 0:
            msg = f"every must be seconds > 0, got {every!r}"
            raise ValueError(msg)
        self.every = float(every)
        self.jitter = float(jitter)
        self._rng = rng or random.Random()
        self._entries: dict[Key, _Entry] = {}
        self._heap: list[tuple[float, int, Key]] = []
        #: Keys due and not started, waiting for their next try.
        self.retrying: set[Key] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def heap_size(self) -> int:
        return len(self._heap)

    def add(self, key: Key, now: float, *, at_once: bool = False) -> None:
        """Schedule a new key: at once (it has no state yet), else on its phase."""
        if key in self._entries:
            return
        due = now if at_once else self._on_phase(key, now)
        entry = _Entry(due)
        self._entries[key] = entry
        self._push(key, entry)

    def remove(self, key: Key) -> None:
        """Forget a key (its heap items go stale); a running pull ends on its own."""
        self._entries.pop(key, None)
        self.retrying.discard(key)

    def keys(self) -> list[Key]:
        return list(self._entries)

    def next_due(self) -> float | None:
        """The earliest time a key is due, or ``None`` when none is waiting."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float, limit: int | None = None) -> list[Key]:
        """The keys due at ``now`` (at most ``limit``), marked running, earliest first."""
        out: list[Key] = []
        heap = self._heap
        while heap and heap[0][0] <= now and (limit is None or len(out) < limit):
            _due, generation, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is None or entry.generation != generation or entry.running or entry.paused:
                continue
            entry.running = True
            out.append(key)
        return out

    def finished(self, key: Key, now: float, *, ok: bool) -> None:
        """A pull of ``key`` ended (``ok``: it completed): when is the next one."""
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.running = False
        entry.skips = 0
        self.retrying.discard(key)
        entry.failures = 0 if ok else entry.failures + 1
        if entry.again and not entry.paused:
            entry.again = False
            self._reschedule(key, entry, now)
            return
        if ok:
            # Back on its phase, at least half an interval on: a chain pulled off its
            # phase (its first pull, a trigger) rejoins the spread instead of a herd.
            due = self._on_phase(key, now + self.every / 2)
            spread = self.every * self.jitter
        else:
            delay = self.every * min(2 ** (entry.failures - 1), MAX_BACKOFF)
            due, spread = now + delay, delay * self.jitter
        self._reschedule(key, entry, due + self._rng.uniform(-spread, spread))

    def not_run(self, key: Key, now: float, *, soon: float = 2.0) -> None:
        """A due key could not be started: once ``soon`` after (its row was locked for a
        moment), then one interval after (another instance holds it)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.running = False
            entry.skips += 1
            if entry.skips == 1:
                self.retrying.add(key)
                delay = min(soon, self.every)
            else:  # held by another instance: its interval, like any other key
                self.retrying.discard(key)
                delay = self.every
            self._reschedule(key, entry, now + delay)

    def trigger(self, key: Key, now: float) -> bool:
        """Pull ``key`` at once (coalesced with a running pull); False if unknown or paused."""
        entry = self._entries.get(key)
        if entry is None or entry.paused:
            return False
        if entry.running:
            entry.again = True
        else:
            self._reschedule(key, entry, now)
        return True

    def pause(self, key: Key) -> None:
        """Stop pulling ``key`` (its connection needs reauthorization) until :meth:`resume`."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.paused = True
            entry.again = False

    def resume(self, key: Key, now: float) -> None:
        """Pull ``key`` again, at once."""
        entry = self._entries.get(key)
        if entry is not None and entry.paused:
            entry.paused = False
            entry.failures = 0
            if not entry.running:
                self._reschedule(key, entry, now)

    def is_paused(self, key: Key) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.paused

    def failures(self, key: Key) -> int:
        entry = self._entries.get(key)
        return 0 if entry is None else entry.failures

    def _on_phase(self, key: Key, after: float) -> float:
        """The first time at or after ``after`` that is on ``key``'s phase."""
        phase = phase_of(key, self.every)
        return phase + math.ceil((after - phase) / self.every) * self.every

    # -- the heap ------------------------------------------------------------------

    def _reschedule(self, key: Key, entry: _Entry, due: float) -> None:
        entry.due = due
        entry.generation += 1
        self._push(key, entry)

    def _push(self, key: Key, entry: _Entry) -> None:
        heapq.heappush(self._heap, (entry.due, entry.generation, key))
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._rebuild()

    def _rebuild(self) -> None:
        self._heap = [
            (e.due, e.generation, k)
            for k, e in self._entries.items()
            if not e.running and not e.paused
        ]
        heapq.heapify(self._heap)

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            _due, generation, key = heap[0]
            entry = self._entries.get(key)
            live = entry is not None and entry.generation == generation
            if live and entry is not None and not entry.running and not entry.paused:
                return
            heapq.heappop(heap)
