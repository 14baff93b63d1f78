"""Serving from the command line, multi-process on one port, the pytest fixtures, public API."""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import sys
import warnings
from typing import Any

import aiohttp
import pytest

from makini_async import testing
from makini_async.testing import MockMakini


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_cli(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "makini_async.testing",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
    except BaseException:
        proc.kill()
        await proc.communicate()
        raise
    assert b"listening on" in line, line
    return proc, line.decode()


async def stop_cli(proc: asyncio.subprocess.Process, sig: int) -> bytes:
    proc.send_signal(sig)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    return err


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
async def test_multiprocess_one_port() -> None:
    port = free_port()
    proc, line = await start_cli(
        "--port", str(port), "--processes", "2", "--records", "30", "--seed", "3"
    )
    try:
        assert "2 processes" in line
        expected = MockMakini(seed=3, records_per_entity=30).records("any", "assets")
        async with aiohttp.ClientSession() as session:
            for i in range(6):
                async with session.get(
                    f"http://127.0.0.1:{port}/api/v1/assets",
                    headers={"Authorization": f"Bearer t{i}"},
                ) as resp:
                    assert resp.status == 200
                    body = await resp.json()
                    assert body["data"] == expected
    finally:
        err = await stop_cli(proc, signal.SIGTERM)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err


async def test_single_process_cli_with_faults() -> None:
    port = free_port()
    proc, _ = await start_cli("--port", str(port), "--error-500", "1")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"http://127.0.0.1:{port}/api/v1/assets", headers={"Authorization": "Bearer x"}
            ) as resp:
                assert resp.status == 500
    finally:
        err = await stop_cli(proc, signal.SIGINT)
    assert proc.returncode == 0, err


def test_parser_and_serve_validation() -> None:
    args = testing.build_parser().parse_args(
        ["--port", "9", "--processes", "3", "--drop", "0.1", "--latency", "0.5"]
    )
    assert (args.port, args.processes, args.drop, args.latency) == (9, 3, 0.1, 0.5)
    with pytest.raises(ValueError, match="fixed port"):
        testing.serve(port=0, processes=2)


async def test_fixture_server(makini_server: MockMakini) -> None:
    assert makini_server.url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{makini_server.url}/api/v1/work-orders", headers={"Authorization": "Bearer f"}
        ) as resp:
            assert resp.status == 200


async def test_fixture_factory(makini_server_factory: Any) -> None:
    a = await makini_server_factory(records_per_entity=3)
    b = await makini_server_factory(records_per_entity=4, seed=9)
    assert a.url != b.url
    assert len(b.records("x", "assets")) == 4


async def test_explicit_start_close_and_url() -> None:
    server = MockMakini()
    with pytest.raises(RuntimeError):
        _ = server.url
    await server.start()
    assert server.port > 0
    await server.close()
    await server.close()  # idempotent


async def test_connections_accepted_as_the_server_closes_are_closed_with_it() -> None:
    """A proxy restarting its upstream: connections in the accept batch when close() begins.

    The selector loop accepts a batch of connections, then sets each up in a task of its
    own. Here close() runs between the two, which used to leave every socket of the batch
    open and unowned until the garbage collector warned about it.
    """
    server = MockMakini()
    await server.start()
    clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        await asyncio.sleep(0)  # this round of the loop polls the listening socket...
        await asyncio.sleep(0)  # ...and this one runs the accept, which queues the set-ups
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await server.close()
            for _ in range(3):
                await asyncio.sleep(0)
            gc.collect()
        unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert unclosed == []
        for client in clients:  # every accepted connection was closed by the server
            client.settimeout(5)
            assert client.recv(1) == b""
    finally:
        for client in clients:
            client.close()


async def test_a_cancelled_close_still_releases_the_port() -> None:
    # asyncio.run() ending cancels a close() still under way: the port must not stay bound.
    server = MockMakini()
    await server.start()
    port = server.port
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for rounds in range(1, 4):  # cancelled at each round close() yields in
            closing = asyncio.create_task(server.close())
            for _ in range(rounds):
                await asyncio.sleep(0)
            closing.cancel()
            await asyncio.gather(closing, return_exceptions=True)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            await server.start()  # the same port binds again
            assert server.port == port
        await server.close()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_concurrent_closes_both_return_once_the_server_is_closed() -> None:
    server = MockMakini()
    await server.start()
    port = server.port
    first = asyncio.create_task(server.close())
    await asyncio.sleep(0)  # the first close() is under way
    await server.close()  # the second returns once the server is closed, not before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    await first
    await server.close()  # and a later one returns at once


def isort_style(names: list[str]) -> list[str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    return sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))


def test_public_api() -> None:
    assert testing.__all__ == isort_style(testing.__all__)
    public = {n for n in dir(testing) if not n.startswith(("_", "@"))}
    modules = {"pytest_plugin"}
    assert public - modules - {"annotations"} == set(testing.__all__)
    from makini_async import webhooks

    assert webhooks.__all__ == isort_style(webhooks.__all__)
