"""The hand-written baselines (aiohttp, httpx, a naive loop) and the tally every contender keeps.

Nothing here loads makini_async: a baseline's figures are its own.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from array import array
from typing import Any

__all__ = ["ID_PREFIX_LEN", "MAX_PAGE_SIZE", "Tally", "run_aiohttp", "run_httpx", "run_naive"]

# The API's largest page per entity (entities.MAX_PAGE_SIZE, not imported: the baselines
# load nothing of makini_async): the baselines ask for it, as the pull does.
MAX_PAGE_SIZE = {
    "purchase-orders": 100,
    "work-orders": 200,
    "assets": 500,
    "inventory-items": 500,
    "vendors": 500,
    "locations": 500,
}

ID_PREFIX_LEN = {
    "purchase-orders": 3,
    "work-orders": 3,
    "assets": 4,
    "inventory-items": 4,
    "vendors": 4,
    "locations": 4,
}


class Tally:
    """What arrived: one flat bitmap of (connection, record index), and request timings.

    Flat and numeric on purpose: this bookkeeping is the harness's, not the
    contender's, and it is in every contender's peak RSS. A bitmap per
    connection in a dict and a list of float objects cost about 250 bytes per
    connection more, which blurs the memory sweep's per-connection slope.
    """

    def __init__(self, connections: int, records: int, entity: str) -> None:
        self.names = [f"c{i:05d}" for i in range(connections)]
        self.tokens = [f"bench-token-{i:05d}" for i in range(connections)]
        self.records = records
        self.bits = bytearray(connections * records)
        self.off = ID_PREFIX_LEN[entity]
        self.received = 0
        self.duplicates = 0
        self.unexpected = 0
        self.latencies = array("d")
        self.requests = 0
        self.errors = 0
        self.error_kinds: dict[str, int] = {}

    def base(self, name: str) -> int:
        """Where connection ``name`` ("c00042") starts in the bitmap."""
        return int(name[1:]) * self.records

    @property
    def distinct(self) -> int:
        return len(self.bits) - self.bits.count(0)

    def mark(self, name: str, rid: str) -> None:
        self.received += 1
        index = int(rid[self.off :])
        if index >= self.records:
            self.unexpected += 1
            return
        pos = self.base(name) + index
        if self.bits[pos]:
            self.duplicates += 1
        else:
            self.bits[pos] = 1

    def mark_page(self, name: str, data: list[dict[str, Any]]) -> None:
        bits = self.bits
        base = self.base(name)
        off = self.off
        size = self.records
        self.received += len(data)
        for record in data:
            index = int(record["id"][off:])
            if index >= size:
                self.unexpected += 1
            elif bits[base + index]:
                self.duplicates += 1
            else:
                bits[base + index] = 1

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


# -- the baselines ---------------------------------------------------------------------


async def run_aiohttp(opts: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    import aiohttp
    import orjson

    url = f"{opts.url}/api/v1/{opts.entity}"
    page_size = str(opts.page_size or MAX_PAGE_SIZE[opts.entity])
    sem = asyncio.Semaphore(opts.concurrency)
    loads = orjson.loads
    clock = time.perf_counter
    lat = tally.latencies

    async def chain(session: aiohttp.ClientSession, name: str, token: str) -> None:
        headers = {"Authorization": "Bearer " + token}
        cursor: str | None = None
        async with sem:
            while True:
                params = {"page_size": page_size}
                if cursor:
                    params["cursor"] = cursor
                t0 = clock()
                tally.requests += 1
                try:
                    async with session.get(url, params=params, headers=headers) as resp:
                        status = resp.status
                        body = await resp.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    tally.error(type(exc).__name__)
                    return
                lat.append(clock() - t0)
                if status != 200:
                    tally.error(str(status))
                    return
                doc = loads(body)
                tally.mark_page(name, doc["data"])
                cursor = doc.get("next_cursor")
                # Freed before the next request, as a careful loop does: a page kept
                # through it is walked by every collection of the oldest generation.
                del body, doc
                if not cursor:
                    return

    connector = aiohttp.TCPConnector(limit=opts.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(
            *(chain(session, n, t) for n, t in zip(tally.names, tally.tokens, strict=False))
        )
    return {}


async def run_httpx(opts: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    import httpx
    import orjson

    url = f"{opts.url}/api/v1/{opts.entity}"
    page_size = str(opts.page_size or MAX_PAGE_SIZE[opts.entity])
    sem = asyncio.Semaphore(opts.concurrency)
    loads = orjson.loads
    clock = time.perf_counter
    lat = tally.latencies

    async def chain(client: httpx.AsyncClient, name: str, token: str) -> None:
        headers = {"Authorization": "Bearer " + token}
        cursor: str | None = None
        async with sem:
            while True:
                params = {"page_size": page_size}
                if cursor:
                    params["cursor"] = cursor
                t0 = clock()
                tally.requests += 1
                try:
                    resp = await client.get(url, params=params, headers=headers)
                except httpx.HTTPError as exc:
                    tally.error(type(exc).__name__)
                    return
                lat.append(clock() - t0)
                if resp.status_code != 200:
                    tally.error(str(resp.status_code))
                    return
                doc = loads(resp.content)
                tally.mark_page(name, doc["data"])
                cursor = doc.get("next_cursor")
                del resp, doc  # freed before the next request, as above
                if not cursor:
                    return

    limits = httpx.Limits(
        max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency
    )
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        await asyncio.gather(
            *(chain(client, n, t) for n, t in zip(tally.names, tally.tokens, strict=False))
        )
    return {}


async def run_naive(opts: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    import aiohttp

    url = f"{opts.url}/api/v1/{opts.entity}"
    page_size = str(opts.page_size or MAX_PAGE_SIZE[opts.entity])
    clock = time.perf_counter
    async with aiohttp.ClientSession() as session:
        for name, token in zip(tally.names, tally.tokens, strict=False):
            headers = {"Authorization": "Bearer " + token}
            cursor: str | None = None
            while True:
                params = {"page_size": page_size}
                if cursor:
                    params["cursor"] = cursor
                t0 = clock()
                tally.requests += 1
                try:
                    async with session.get(url, params=params, headers=headers) as resp:
                        status = resp.status
                        doc = await resp.json() if status == 200 else None
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    tally.error(type(exc).__name__)
                    break
                tally.latencies.append(clock() - t0)
                if doc is None:
                    tally.error(str(status))
                    break
                tally.mark_page(name, doc["data"])
                cursor = doc.get("next_cursor")
                if not cursor:
                    break
    return {}
