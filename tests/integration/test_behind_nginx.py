"""Behind a real reverse proxy: nginx in front of the mock, the API gone for a few seconds.

Every connection gets nginx's own HTML 502 at once. The pull waits the outage
out and completes in the same run, with every record exactly once, and no
HTML page ever reaches an error. ``.ci/run`` installs nginx (Debian's
``nginx-light``) when it is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from makini_async import Hook, MakiniPool, OutageEvent, PageSizes, set_testing
from makini_async.testing import MockMakini

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (.ci/run installs it)"
)

TOKENS = [(f"plant-{i:03d}", f"tok_nginx_{i:03d}") for i in range(100)]
RECORDS = 400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(tmp: Path, listen: int, upstream: int) -> Path:
    temp = {name: tmp / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""{user}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    upstream api {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_read_timeout 10s;
        }}
    }}
}}
"""
    )
    return conf


@pytest.fixture
async def nginx(tmp_path: Path) -> Any:
    upstream, listen = free_port(), free_port()
    conf = config(tmp_path, listen, upstream)
    assert NGINX is not None
    proc = await asyncio.create_subprocess_exec(
        NGINX, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(100):  # until it listens
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", listen)
            except OSError:  # noqa: PERF203 - not listening yet
                await asyncio.sleep(0.05)
            else:
                writer.close()
                await writer.wait_closed()
                break
        yield upstream, f"http://127.0.0.1:{listen}"
    finally:
        proc.terminate()
        await proc.wait()


class Outages(Hook):
    def __init__(self) -> None:
        self.events: list[OutageEvent] = []

    def on_outage(self, event: OutageEvent) -> None:
        self.events.append(event)


async def test_a_pull_rides_through_the_api_going_away_behind_nginx(
    nginx: tuple[int, str],
) -> None:
    upstream, url = nginx
    set_testing(True)  # zero backoff: the outage itself still takes real seconds
    hook = Outages()
    server = MockMakini(records_per_entity=RECORDS, port=upstream, seed=11)
    await server.start()
    seen: Counter[tuple[str, str, str]] = Counter()
    try:
        async with MakiniPool(
            base_url=url,
            as_dicts=True,
            hooks=[hook],
            page_sizes=PageSizes({"work-orders": 50, "assets": 50}),
        ) as pool:
            async with pool.pull(["work-orders", "assets"], TOKENS) as pull:
                pages = 0
                async for page in pull.pages():
                    pages += 1
                    if pages == 200:
                        # The API is gone: nginx answers every connection with its 502 page.
                        await server.close()

                        async def come_back() -> None:
                            await asyncio.sleep(4.0)
                            await server.start()

                        revival = asyncio.create_task(come_back())
                    for record in page.records:
                        seen[(page.connection, page.entity.value, record["id"])] += 1
            await revival
    finally:
        await server.close()
    expected = {
        (name, entity, f"{prefix}{index:06d}")
        for name, _ in TOKENS
        for entity, prefix in (("work-orders", "wo_"), ("assets", "ast_"))
        for index in range(RECORDS)
    }
    assert pull.report.ok, pull.report.summary()
    assert set(seen) == expected
    assert max(seen.values()) == 1
    assert [e.kind for e in hook.events] == ["began", "ended"]
    assert hook.events[1].duration >= 3.0
