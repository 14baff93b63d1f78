"""A record that does not fit its model, kept whole instead of being dropped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

if TYPE_CHECKING:
    from makini_async.entities import Entity

__all__ = ["ON_INVALID", "InvalidRecord", "OnInvalid"]

#: What a listing or pull does with a record that does not fit its model:
#: ``"deliver"`` it as an :class:`InvalidRecord` among the records,
#: ``"skip"`` it in record iteration (pages still carry it in ``invalid``), or
#: ``"raise"`` a :class:`~makini_async.errors.RecordStructureError` carrying it.
OnInvalid = Literal["deliver", "skip", "raise"]
ON_INVALID: Final[frozenset[str]] = frozenset({"deliver", "skip", "raise"})


@attrs.frozen(slots=True, kw_only=True, weakref_slot=False)
class InvalidRecord:
    """A record the model cannot read, as the API sent it.

    ``data`` is the API object exactly as parsed from JSON (usually a dict;
    whatever the source sent when it is not an object). ``field`` is the path
    of the first value that does not fit (``lines[2].quantity``; ``None`` when
    the record itself is not an object) and ``reason`` says why. Nothing of
    the record is lost: store ``data`` and repair it later.
    """

    entity: Entity
    data: Any = attrs.field(repr=False)
    field: str | None
    reason: str
    request_id: str | None = None
    connection: str | None = None

    @property
    def id(self) -> str | None:
        """The record's id as text, when it has a usable one."""
        data = self.data
        value = data.get("id") if isinstance(data, dict) else None
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None

    def describe(self) -> str:
        """What is wrong, without where it came from."""
        where = f"field {self.field!r}" if self.field else "the record"
        return f"invalid {self.entity.value} record (id={self.id!r}): {where}: {self.reason}"

    def __str__(self) -> str:
        text = self.describe()
        if self.connection:
            text += f" (connection={self.connection}"
            text += f", request_id={self.request_id})" if self.request_id else ")"
        elif self.request_id:
            text += f" (request_id={self.request_id})"
        return text
