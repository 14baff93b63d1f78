"""Keep every customer in sync: a long-running mirror, driven by a schedule and webhooks.

See :class:`Sync` (``pool.sync(...)``) and the ``makini-async sync`` command.
"""

from __future__ import annotations

from makini_async.sync._schedule import Schedule, phase_of
from makini_async.sync._service import SyncPool, SyncService
from makini_async.sync._sync import DEFAULT_EVERY, Sync

__all__ = ["DEFAULT_EVERY", "Schedule", "Sync", "SyncPool", "SyncService", "phase_of"]
