"""A connection's token: fixed, replaced in place, or asked of a provider when it fails.

Makini's tokens change when a customer reconnects. A handle keeps its
state (cooldown, breaker, reauthorization mark, counters) across a change
of token, in two ways:

* ``pool.connection(new_token, name="acme")`` for a name the pool already
  has replaces that handle's token in place (:meth:`Credentials.replace`);
* ``pool.connection(name="acme", token=provider)``: ``provider`` is a sync or
  async callable returning the current token. It is asked before the first
  call, and again once when the API answers 401 ``AUTHENTICATION_FAILED``:
  if the token it returns differs, the call is sent again once with it.
  ``REAUTHORIZATION_REQUIRED`` stays terminal (the customer must reconnect).

A change is atomic for requests in flight: each attempt reads the token
when its headers are built, so an attempt goes out with the old token or the
new one, never a mix, and concurrent 401s ask the provider once.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Union

from makini_async._wire.requests import check_token, valid_token
from makini_async.errors import MakiniError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Credentials", "TokenProvider", "TokenProviderError"]

#: A callable returning the connection's current token (sync or async).
TokenProvider = Union["Callable[[], str]", "Callable[[], Awaitable[str]]"]


class TokenProviderError(MakiniError):
    """The token provider raised, or returned something that is not a token."""


class Credentials:
    """One connection's token, its earlier ones (still scrubbed from text) and its provider."""

    __slots__ = ("_lock", "_provider", "changed_at", "generation", "previous", "token")

    def __init__(self, token: str | None, provider: Callable[[], Any] | None) -> None:
        self.token = token
        self._provider = provider
        self._lock: asyncio.Lock | None = None
        #: Tokens this connection had before (the last few), never shown anywhere either.
        self.previous: tuple[str, ...] = ()
        #: How many times the token changed (0: never).
        self.generation = 0
        #: When it last changed, on the pool clock (``None``: never).
        self.changed_at: float | None = None

    @property
    def has_provider(self) -> bool:
        return self._provider is not None

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.previous if self.token is None else (self.token, *self.previous)

    def replace(self, token: str, now: float) -> bool:
        """Use ``token`` from now on; whether it differs from the current one."""
        check_token(token)
        if token == self.token:
            return False
        if self.token is not None:
            self.previous = (self.token, *self.previous)[:3]
        self.token = token
        self.generation += 1
        self.changed_at = now
        return True

    async def current(self, name: str) -> str:
        """The token to send (the provider is asked for the first one)."""
        token = self.token
        if token is not None:
            return token
        async with self._guard():
            if self.token is None:
                self.token = await self._ask(name)
            return self.token

    async def refresh(self, used: str, name: str, now: float) -> bool:
        """After a 401 for ``used``: ask the provider once; whether the token changed."""
        if self._provider is None:
            return False
        async with self._guard():
            if self.token != used:
                return True  # another call refreshed it meanwhile
            return self.replace(await self._ask(name), now)

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _ask(self, name: str) -> str:
        assert self._provider is not None  # noqa: S101 - only called with a provider
        try:
            token = self._provider()
            if inspect.isawaitable(token):
                token = await token
        except Exception as exc:  # noqa: BLE001 - the application's callable, told by type only
            msg = f"the token provider of connection {name!r} raised {type(exc).__name__}"
            raise TokenProviderError(msg, connection=name) from None
        if not valid_token(token):
            msg = f"the token provider of connection {name!r} returned no valid token"
            raise TokenProviderError(msg, connection=name)
        return str(token)
