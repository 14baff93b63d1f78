"""The send loop: one call to the API, with its attempts, waits and health updates.

A call goes through three steps, each a function of its own::

    send()        the retry loop: attempts, waits, the breaker, counting, hooks
    _transmit()   one attempt on the wire: the connection's and the pool's
                  concurrency limits, the shared 429 pause, the transport
    _error_of()   an answer that is not a success: the typed error it stands for

This is the only module that knows about testing mode
(:func:`~makini_async.set_testing`): it makes every wait zero and may
override the number of attempts, and changes nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from typing import TYPE_CHECKING, Any, Final, TypeVar

from makini_async._client.outage import Waiter, is_outage_class
from makini_async._client.retry import WaitSchedule, effective_attempts, is_testing
from makini_async._wire.responses import error_from_response, redirect_error
from makini_async.errors import (
    APIError,
    AuthenticationError,
    MakiniError,
    RateLimitError,
    RequestTimeout,
    TransportError,
)
from makini_async.instrumentation import RequestEvent, RetryEvent, emit

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from makini_async._client.call import Call, Link, Tally
    from makini_async._client.config import CallOptions, RetryPolicy
    from makini_async._client.shared import Shared
    from makini_async._client.transport import RawResponse
    from makini_async.telemetry._otel import Telemetry

__all__ = ["send"]

logger = logging.getLogger("makini_async")

T = TypeVar("T")

# Without a Retry-After, a 429 pauses the connection for at least this long.
_DEFAULT_COOLDOWN: Final = 1.0


def send(
    conn: Link,
    call: Call,
    parse: Callable[[RawResponse, str | None], T],
    *,
    adapt: Callable[[MakiniError, dict[str, str]], bool] | None = None,
    tally: Tally | None = None,
    patient: bool = False,
    options: CallOptions | None = None,
) -> Coroutine[Any, Any, T]:
    """``call`` with retries, to await: it gives ``parse(response, request_id)``.

    Not a coroutine function itself: an ordinary call hands back the send
    loop's own coroutine, so its caller awaits it with no frame in between.

    ``adapt`` may correct the call's parameters after an error (a page size
    the API refused) and return True to send it again without counting an
    attempt. ``tally`` counts retries and 429 answers for its caller. During
    an outage of the whole API (see :mod:`makini_async._client.outage`) the call
    waits for the API instead of spending attempts, up to its own
    ``RetryPolicy.timeout``, or (``patient``, as bulk pulls do) up to the
    pool's outage budget. ``options`` (:class:`~makini_async.CallOptions`)
    override the pool's policy for this call; their ``timeout`` bounds the
    whole call, waits included, and raises :class:`RequestTimeout`.
    """
    telemetry = conn.shared.telemetry
    if telemetry is not None and not telemetry.live():
        telemetry = None
    inner = _send(
        conn, call, parse, adapt=adapt, tally=tally, patient=patient, tel=telemetry, options=options
    )
    if telemetry is not None:
        inner = _traced(conn, call, telemetry, inner)
    timeout = None if options is None else options.timeout
    return inner if timeout is None else _bounded(conn, inner, timeout)


async def _bounded(conn: Link, inner: Coroutine[Any, Any, T], timeout: float) -> T:
    """``inner`` within ``timeout`` seconds, or :class:`RequestTimeout`.

    What ``asyncio.timeout`` does, with one timer and no context manager:
    the task is cancelled when the timer fires, and that cancellation (only
    that one, never another task's) becomes the timeout. ``asyncio.timeout``
    cost more than the rest of the library on a call (about 9 µs against 6).
    """
    task = asyncio.current_task()
    if sys.version_info < (3, 11) or task is None:  # 3.10 has no uncancel: a task of its own
        try:
            return await asyncio.wait_for(inner, timeout)
        except asyncio.TimeoutError:
            raise _call_timeout(conn, timeout) from None
    cancelling = task.cancelling()
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    timer = task.get_loop().call_later(timeout, expire)
    try:
        result = await inner
    except asyncio.CancelledError:
        # Ours if the timer fired and no other cancellation is pending.
        if fired and task.uncancel() <= cancelling:
            raise _call_timeout(conn, timeout) from None
        raise
    finally:
        timer.cancel()
    if fired:
        task.uncancel()  # the call finished anyway: the timer's request is void
    return result


def _call_timeout(conn: Link, timeout: float) -> RequestTimeout:
    msg = f"the call did not finish within {timeout:g} s (retries and waits included)"
    return RequestTimeout(msg, connection=conn.name)


async def _traced(conn: Link, call: Call, telemetry: Telemetry, inner: Coroutine[Any, Any, T]) -> T:
    with telemetry.call(conn.name, call):
        return await inner


async def _send(
    conn: Link,
    call: Call,
    parse: Callable[[RawResponse, str | None], T],
    *,
    adapt: Callable[[MakiniError, dict[str, str]], bool] | None,
    tally: Tally | None,
    patient: bool,
    tel: Telemetry | None,
    options: CallOptions | None = None,
) -> T:
    shared = conn.shared
    shared.ensure_open()
    telemetry = tel
    probe = conn._guard()
    # A provider is asked only for a connection's first token: no await once it is known.
    used = conn.token or await conn._authorization()
    headers = conn._headers(call, used)
    refresh = True  # a 401 AUTHENTICATION_FAILED asks a token provider once per call
    url = shared.api_url + call.path
    testing = shared.testing or is_testing()
    policy: RetryPolicy = shared.retry
    attempts = effective_attempts(policy)
    if options is not None:
        if options.retry is not None:
            policy = options.retry
            attempts = effective_attempts(policy)
        if options.max_retries is not None:
            attempts = options.max_retries + 1  # asked for this call: wins over testing mode
    limit = policy.timeout if options is None or options.timeout is None else options.timeout
    clock = shared.clock
    hooks = shared.hooks
    outage = shared.outage
    started = clock()
    waiter = Waiter(math.inf if patient else started + limit)
    conn._begin(started)
    schedule: WaitSchedule | None = None
    attempt = 0
    try:
        while True:
            attempt += 1
            t0 = clock()
            status: int | None = None
            request_id: str | None = None
            error: MakiniError
            span = None
            sent = headers
            if telemetry is not None:
                span = telemetry.attempt(conn.name, call, attempt, headers)
                sent = span.headers  # with traceparent
            try:
                resp = await _transmit(
                    conn, shared, call, url, sent, waiter=waiter, testing=testing
                )
            except TransportError as exc:
                error = exc
            else:
                status = resp.status
                request_id = resp.headers.get("X-Request-Id")
                try:
                    if status >= 300:
                        raise _error_of(conn, call, resp)
                    result = parse(resp, request_id)
                except (TransportError, APIError) as exc:  # an error answer, a bad body
                    error = exc
                except MakiniError as exc:  # the answer does not fit (never retried)
                    exc.connection = conn.name
                    if span is not None:
                        span.done(status=status, request_id=request_id, error=exc)
                    raise
                else:
                    if span is not None:
                        span.done(status=status, request_id=request_id)
                    conn._succeeded()
                    if not outage.quiet:
                        await outage.answered(waiter, t0)
                    if hooks.on_request:
                        await _announce_request(
                            conn,
                            call,
                            status=status,
                            request_id=request_id,
                            started=t0,
                            attempt=attempt,
                        )
                    if probe:
                        probe = False
                        await conn._close_breaker(request_id)
                    return result
            conn.failures += 1
            error.connection = conn.name
            if error.request_id is None:
                error.request_id = request_id
            if span is not None:
                span.done(status=status, request_id=error.request_id, error=error)
            if hooks.on_request:
                await _announce_request(
                    conn,
                    call,
                    status=status,
                    request_id=error.request_id,
                    started=t0,
                    attempt=attempt,
                    error=type(error).__name__,
                )
            if refresh and type(error) is AuthenticationError:
                refresh = False
                if await conn._refresh_token(used):
                    # A new token (from the connection's provider): this attempt again.
                    used = await conn._authorization()
                    headers = conn._headers(call, used)
                    attempt -= 1
                    continue
            if isinstance(error, RateLimitError):
                conn.rate_limited += 1
                if tally is not None:
                    tally.rate_limited += 1
                if telemetry is not None:
                    telemetry.event("makini.cooldown", error.retry_after or _DEFAULT_COOLDOWN)
            if isinstance(error, APIError) and not is_outage_class(error):
                # Only the API sends a 404, a 429 or a customer system's 502: it is up.
                if not outage.quiet:
                    await outage.answered(waiter, t0)
            else:
                await outage.failed(conn.name, error)
                if waiter.ticket:
                    outage.probe_failed(waiter)
            blameless = outage.since is not None and is_outage_class(error)
            pause = _pause(error, testing=testing)
            await conn._failed(error, probe=probe, pause=pause, blameless=blameless)
            if blameless:
                if call.may_retry:
                    # The API is down for everyone: wait for it (the next attempt
                    # waits in admit() until the outage ends), spend no attempt, and
                    # keep a breaker probe for that attempt (it says nothing yet).
                    attempt -= 1
                    continue
            else:
                probe = False
                if adapt is not None and call.params is not None and adapt(error, call.params):
                    attempt -= 1  # a page-size clamp is a correction, not a retry
                    continue
            if not (error.retryable and call.may_retry) or attempt >= attempts:
                raise error
            if conn.breaker_open:
                raise conn._breaker_error(error, while_waiting=False) from error
            if schedule is None:
                schedule = WaitSchedule(policy, shared.rng)
            wait = _retry_wait(
                conn, error, started, schedule, testing=testing, policy=policy, limit=limit
            )
            conn.retries += 1
            if tally is not None:
                tally.retries += 1
            await _announce_retry(conn, call, attempt, wait, error)
            if telemetry is not None:
                telemetry.retry(error, attempt, wait)
            if wait > 0:
                await shared.sleep(wait)
            if conn.breaker_open:
                # Another task's failures opened the breaker while this one waited.
                raise conn._breaker_error(error, while_waiting=True) from error
    finally:
        conn._end()
        if probe:
            conn._end_probe()
        if waiter.ticket:
            outage.probe_ended(waiter)


def _error_of(conn: Link, call: Call, resp: RawResponse) -> MakiniError:
    """The typed error a 3xx or an error answer stands for."""
    status = resp.status
    if status < 400:
        return redirect_error(call.method, call.path, status, resp.headers, token=conn.token)
    return error_from_response(status, resp.headers, resp.body, token=conn.token)


async def _transmit(
    conn: Link,
    shared: Shared,
    call: Call,
    url: str,
    headers: dict[str, str],
    *,
    waiter: Waiter,
    testing: bool,
) -> RawResponse:
    """One attempt: wait for the connection's and the pool's slots, then send.

    During an outage the attempt waits for the API (or goes out as the
    probe) only after its connection's 429 pause: a probe never sits out
    another connection's rate limit while every other request waits for it.
    """
    mine = conn._slot()
    if mine.free > 0:  # a free slot is taken without an await (see _client.gate)
        mine.free -= 1
    else:
        await mine.enter()
    try:
        if not testing and conn._cooldown_until:
            # One shared pause per connection: every task waits out the same 429.
            while (delay := conn._cooldown_left()) > 0:
                if delay > shared.retry.max_retry_after:
                    msg = f"connection paused by a 429 for another {delay:.0f}s"
                    raise RateLimitError(msg, status=429, retry_after=delay, connection=conn.name)
                if shared.telemetry is not None:
                    shared.telemetry.event("makini.cooldown", delay)
                await shared.sleep(delay)
        if shared.outage.since is not None:
            if shared.telemetry is not None:
                shared.telemetry.event("makini.outage_wait")
            await shared.outage.admit(waiter)
        pool = shared.gate
        if pool.free > 0:
            pool.free -= 1
        else:
            await pool.enter()
        try:
            conn.requests += 1
            clock = shared.clock
            sent = clock()
            resp = await shared.transport.request(
                call.method, url, headers=headers, params=call.params, body=call.body
            )
            resp.elapsed = clock() - sent
            return resp
        finally:
            pool.leave()
    finally:
        mine.leave()


def _pause(error: MakiniError, *, testing: bool) -> float:
    """How long a 429 pauses its connection (zero in testing mode)."""
    if testing or not isinstance(error, RateLimitError):
        return 0.0
    return error.retry_after if error.retry_after is not None else _DEFAULT_COOLDOWN


def _retry_wait(
    conn: Link,
    error: MakiniError,
    started: float,
    schedule: WaitSchedule,
    *,
    testing: bool,
    policy: RetryPolicy,
    limit: float,
) -> float:
    """The wait before the next attempt, or raise ``error`` to give up."""
    shared = conn.shared
    wait = schedule.next_wait()
    retry_after: float | None = getattr(error, "retry_after", None)
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            raise error
        wait = max(wait, retry_after)
    if isinstance(error, RateLimitError):
        # Never earlier than the connection's shared cooldown.
        wait = max(wait, conn._cooldown_left())
    if testing:
        wait = 0.0
    if shared.clock() + wait - started > limit:
        raise error
    if not isinstance(error, RateLimitError) and not shared.budget.try_spend():
        logger.warning(
            "retry budget exhausted: not retrying %s (connection=%s, request_id=%s)",
            type(error).__name__,
            conn.name,
            error.request_id,
        )
        raise error
    return wait


async def _announce_request(
    conn: Link,
    call: Call,
    *,
    status: int | None,
    request_id: str | None,
    started: float,
    attempt: int,
    error: str | None = None,
) -> None:
    shared = conn.shared
    event = RequestEvent(
        conn.name,
        call.method,
        call.path,
        status,
        request_id,
        shared.clock() - started,
        attempt,
        error,
    )
    await emit(shared.hooks.on_request, event)


async def _announce_retry(
    conn: Link, call: Call, attempt: int, wait: float, error: MakiniError
) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "retrying %s %s in %.2fs after %s (connection=%s, attempt=%d, request_id=%s)",
            call.method,
            call.path,
            wait,
            type(error).__name__,
            conn.name,
            attempt,
            error.request_id,
        )
    listeners = conn.shared.hooks.on_retry
    if listeners:
        event = RetryEvent(
            conn.name,
            call.method,
            call.path,
            attempt,
            wait,
            type(error).__name__,
            error.request_id,
        )
        await emit(listeners, event)
