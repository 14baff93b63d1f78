"""What a call hands back besides its record: ``resource.with_raw_response``.

::

    answer = await conn.work_orders.with_raw_response.create(body, idempotency_key="order-7")
    answer.data             # the WorkOrder
    answer.request_id       # "req_..." (quote it to Makini's support)
    answer.idempotency_key  # "order-7" (or the one generated for the call)
    answer.status, answer.headers

Every call of a resource has its raw form here, with the same arguments and
defaults (``idempotency_key=None`` sends none, as on the resource); the call
itself (retries, the connection's cooldown and breaker) is the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, overload

import attrs

from makini_async._client.call import Call
from makini_async._wire.arguments import AUTO
from makini_async._wire.responses import parse_single
from makini_async.models import Record

if TYPE_CHECKING:
    from collections.abc import Mapping

    from makini_async._client.transport import RawResponse
    from makini_async._wire.arguments import _Auto

__all__ = ["RawResource", "Response"]

T = TypeVar("T")
R = TypeVar("R", bound=Record)
R_co = TypeVar("R_co", bound=Record, covariant=True)

#: A single record's answer: the record, its request ID, the status and the headers.
Answer = tuple[dict[str, Any], str | None, int, "Mapping[str, str]"]


class Calls(Protocol[R_co]):
    """What a raw resource needs of its resource (a :class:`~makini_async.resources.Resource`)."""

    async def _call(
        self, call: Call, timeout: float | None, max_retries: int | None, *, body: bool = True
    ) -> Answer: ...
    def _create_call(self, body: Mapping[str, Any] | Record, key: str | _Auto | None) -> Call: ...
    def _update_call(
        self, id: str, changes: Mapping[str, Any], key: str | _Auto | None
    ) -> Call: ...
    def _record_path(self, id: str) -> str: ...
    def _shape(self, answer: Answer, as_dicts: bool) -> R_co | dict[str, Any]: ...  # noqa: FBT001


@attrs.frozen
class Response(Generic[T]):
    """A call's answer: ``data``, and the HTTP status, headers, request ID and idempotency key."""

    data: T
    status: int
    headers: Mapping[str, str] = attrs.field(repr=False)
    request_id: str | None
    #: The ``Idempotency-Key`` the call sent (``None`` for reads and deletes, or if disabled).
    idempotency_key: str | None = None


class RawResource(Generic[R]):
    """A resource's calls answering :class:`Response` instead of the bare record."""

    __slots__ = ("_res",)

    def __init__(self, resource: Calls[R]) -> None:
        self._res = resource

    @overload
    async def get(
        self,
        id: str,
        *,
        as_dicts: Literal[False] = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Response[R]: ...
    @overload
    async def get(
        self,
        id: str,
        *,
        as_dicts: Literal[True],
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Response[dict[str, Any]]: ...

    async def get(
        self,
        id: str,
        *,
        as_dicts: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Response[Any]:
        res = self._res
        call = Call("GET", res._record_path(id))
        return await self._send(call, as_dicts, timeout, max_retries)

    @overload
    async def create(
        self,
        body: Mapping[str, Any] | Record,
        *,
        idempotency_key: str | _Auto | None = ...,
        as_dicts: Literal[False] = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Response[R]: ...
    @overload
    async def create(
        self,
        body: Mapping[str, Any] | Record,
        *,
        idempotency_key: str | _Auto | None = ...,
        as_dicts: Literal[True],
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Response[dict[str, Any]]: ...

    async def create(
        self,
        body: Mapping[str, Any] | Record,
        *,
        idempotency_key: str | _Auto | None = AUTO,
        as_dicts: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Response[Any]:
        call = self._res._create_call(body, idempotency_key)
        return await self._send(call, as_dicts, timeout, max_retries)

    @overload
    async def update(
        self,
        id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | _Auto | None = ...,
        as_dicts: Literal[False] = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Response[R]: ...
    @overload
    async def update(
        self,
        id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | _Auto | None = ...,
        as_dicts: Literal[True],
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> Response[dict[str, Any]]: ...

    async def update(
        self,
        id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | _Auto | None = AUTO,
        as_dicts: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Response[Any]:
        call = self._res._update_call(id, changes, idempotency_key)
        return await self._send(call, as_dicts, timeout, max_retries)

    async def delete(
        self, id: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> Response[None]:
        res = self._res
        call = Call("DELETE", res._record_path(id))
        answer = await res._call(call, timeout, max_retries, body=False)
        _data, request_id, status, headers = answer
        return Response(None, status, headers, request_id)

    async def _send(
        self,
        call: Call,
        as_dicts: bool,  # noqa: FBT001
        timeout: float | None,
        max_retries: int | None,
    ) -> Response[Any]:
        res = self._res
        answer = await res._call(call, timeout, max_retries)
        _data, request_id, status, headers = answer
        data = res._shape(answer, as_dicts)
        return Response(data, status, headers, request_id, call.idempotency_key)


def answer(resp: RawResponse, request_id: str | None) -> Answer:
    """A single record's answer: the record, its request ID, the status and the headers."""
    return parse_single(resp.body, request_id=request_id), request_id, resp.status, resp.headers


def no_body(resp: RawResponse, request_id: str | None) -> Answer:
    """An answer whose body does not matter (a delete)."""
    return {}, request_id, resp.status, resp.headers
