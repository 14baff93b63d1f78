"""A unit's fence: the lease epoch it writes under, checked in each commit's transaction."""

from __future__ import annotations

from typing import Any, Final

import attrs

from makini_async.errors import LeaseLost

__all__ = ["LEASES_TABLE", "Fence", "check_fence"]

#: The table holding each lease's epoch.
LEASES_TABLE: Final = "makini_leases"


@attrs.frozen
class Fence:
    """The lease a unit writes under: its commits fail once ``epoch`` is not the lease's."""

    name: str
    epoch: int
    table: str = LEASES_TABLE


async def check_fence(db: Any, fence: Fence | None) -> None:
    """Raise :class:`LeaseLost` unless ``fence`` still holds; in the caller's transaction."""
    if fence is None:
        return
    epoch = await db.fetchval(
        f"SELECT epoch FROM {fence.table} WHERE name = $1 FOR SHARE",  # noqa: S608 - checked
        fence.name,
    )
    if epoch != fence.epoch:
        msg = (
            f"the pull's lease on {fence.name!r} was taken over (epoch {fence.epoch} -> "
            f"{epoch}): a newer driver owns this checkpoint, so this unit stops writing"
        )
        raise LeaseLost(msg)
