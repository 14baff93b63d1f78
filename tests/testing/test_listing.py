"""Listing: keyset cursors, page sizes, filters, total_count, page cache."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from makini_async.entities import MAX_PAGE_SIZE, Entity
from makini_async.testing import MockMakini


async def test_walk_all_pages_default_page_size(
    makini_server_factory: Any, make_client: Any
) -> None:
    server = await makini_server_factory(records_per_entity=450)
    client = make_client(server)
    status, body, _ = await client.call("GET", "/api/v1/work-orders")
    assert status == 200
    assert len(body["data"]) == MAX_PAGE_SIZE[Entity.WORK_ORDERS]
    assert body["total_count"] == 450
    assert body["next_cursor"]
    records = await client.walk("work-orders")
    assert [r["id"] for r in records] == [r["id"] for r in server.records("tok", "work-orders")]
    records = await client.walk("purchase-orders", page_size=7)
    assert len(records) == 450
    assert len({r["id"] for r in records}) == 450


async def test_last_page_has_null_cursor(client: Any) -> None:
    status, body, _ = await client.call("GET", "/api/v1/vendors", params={"page_size": "100"})
    assert status == 200
    assert len(body["data"]) == 100
    assert body["next_cursor"] is None
    status, body, _ = await client.call("GET", "/api/v1/vendors", params={"page_size": "99"})
    assert body["next_cursor"] is not None


async def test_page_size_limits(client: Any) -> None:
    for entity, limit in MAX_PAGE_SIZE.items():
        status, body, _ = await client.call(
            "GET", f"/api/v1/{entity.value}", params={"page_size": str(limit + 1)}
        )
        assert status == 400
        assert body["error"]["code"] == "INVALID_PAGE_SIZE"
        assert body["error"]["details"]["max_page_size"] == limit
        status, _, _ = await client.call(
            "GET", f"/api/v1/{entity.value}", params={"page_size": str(limit)}
        )
        assert status == 200
    for bad in ("0", "-3", "ten", "1.5", ""):
        status, body, _ = await client.call("GET", "/api/v1/assets", params={"page_size": bad})
        assert status == 400, bad
        assert body["error"]["code"] == "INVALID_REQUEST"


async def test_bad_cursor_and_bad_dates(client: Any) -> None:
    for cursor in ("not-a-cursor!!", "bWsxOng", "Zm9vOjE"):
        status, body, _ = await client.call("GET", "/api/v1/assets", params={"cursor": cursor})
        assert status == 400, cursor
        assert body["error"]["code"] == "INVALID_REQUEST"
    for name in ("modified_after", "created_after"):
        for value in ("yesterday", "2024-13-01", "2024-01-01T25:00:00Z"):
            status, body, _ = await client.call("GET", "/api/v1/assets", params={name: value})
            assert status == 400
            assert body["error"]["code"] == "INVALID_REQUEST"


async def test_filters_inclusive(makini_server: MockMakini, client: Any) -> None:
    records = makini_server.records("tok", "assets")
    pivot = sorted(r["updated_at"] for r in records)[40]
    got = await client.walk("assets", modified_after=pivot, page_size=13)
    expected = [r["id"] for r in records if r["updated_at"] >= pivot]
    assert [r["id"] for r in got] == expected
    assert pivot in {r["updated_at"] for r in got}, "boundary record kept (>=)"
    _status, body, _ = await client.call(
        "GET", "/api/v1/assets", params={"modified_after": pivot, "page_size": "5"}
    )
    assert body["total_count"] == len(expected)
    # Date-only and offset forms.
    day = records[50]["created_at"][:10]
    got = await client.walk("assets", created_after=day)
    assert [r["id"] for r in got] == [
        r["id"] for r in records if r["created_at"] >= f"{day}T00:00:00Z"
    ]
    got = await client.walk("assets", created_after=f"{day}T02:00:00+02:00")
    assert [r["id"] for r in got] == [
        r["id"] for r in records if r["created_at"] >= f"{day}T00:00:00Z"
    ]
    # Both filters at once.
    got = await client.walk("assets", created_after=day, modified_after=pivot)
    assert all(r["created_at"] >= day and r["updated_at"] >= pivot for r in got)


async def test_total_count_null_when_not_reported(makini_server: MockMakini, client: Any) -> None:
    makini_server.configure_connection("quiet", report_total_count=False)
    status, body, _ = await client.call("GET", "/api/v1/assets", "quiet")
    assert status == 200
    assert body["total_count"] is None
    _, body, _ = await client.call("GET", "/api/v1/assets", "loud")
    assert body["total_count"] == 100


async def test_pages_stable_under_http_mutations(makini_server: MockMakini, client: Any) -> None:
    token = "mut"
    original = {r["id"] for r in makini_server.records(token, "vendors")}
    seen: list[str] = []
    cursor = None
    deleted: set[str] = set()
    step = 0
    while True:
        params = {"page_size": "9"}
        if cursor:
            params["cursor"] = cursor
        status, body, _ = await client.call("GET", "/api/v1/vendors", token, params=params)
        assert status == 200
        seen += [r["id"] for r in body["data"]]
        # Mutate between pages: insert, update an unseen record, delete a seen and unseen one.
        step += 1
        makini_server.insert(token, "vendors", {"name": f"new {step}"})
        current = makini_server.records(token, "vendors")
        unseen = [r["id"] for r in current if r["id"] not in seen and r["id"] in original]
        if unseen:
            makini_server.update(token, "vendors", unseen[0], {"name": "touched"})
        if len(unseen) > 3:
            makini_server.delete(token, "vendors", unseen[-1])
            deleted.add(unseen[-1])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen))
    assert original - deleted <= set(seen)


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["page", "insert", "update", "delete"]), st.integers(0, 10**6)),
        max_size=60,
    ),
    page_size=st.integers(1, 12),
    initial=st.integers(0, 40),
)
def test_keyset_pagination_never_skips_or_repeats(
    ops: list[tuple[str, int]], page_size: int, initial: int
) -> None:
    server = MockMakini(records_per_entity=initial)
    token = "hyp"
    conn = server._conn(token)
    entity = Entity.LOCATIONS
    start_ids = {r["id"] for r in server.records(token, entity)}
    removed: set[str] = set()
    seen: list[str] = []
    cursor: str | None = None
    done = False

    def fetch() -> None:
        nonlocal cursor, done
        query = {"page_size": str(page_size)}
        if cursor:
            query["cursor"] = cursor
        answer = server.list_page(conn, entity, query, "req_test")
        assert answer.status == 200
        body = orjson.loads(answer.body or b"")
        assert len(body["data"]) <= page_size
        seen.extend(r["id"] for r in body["data"])
        cursor = body["next_cursor"]
        done = cursor is None

    fetch()
    for op, n in ops:
        if done:
            break
        current = [r["id"] for r in server.records(token, entity)]
        if op == "page":
            fetch()
        elif op == "insert":
            server.insert(token, entity, {"name": "ins"})
        elif op == "update" and current:
            server.update(token, entity, current[n % len(current)], {"name": f"u{n}"})
        elif op == "delete" and current:
            victim = current[n % len(current)]
            server.delete(token, entity, victim)
            removed.add(victim)
    while not done:
        fetch()
    assert len(seen) == len(set(seen)), "no record twice"
    assert start_ids - removed <= set(seen), "every record present throughout was seen"


async def test_page_cache_hit_and_invalidation(makini_server: MockMakini, client: Any) -> None:
    _, first, _ = await client.call("GET", "/api/v1/assets", params={"page_size": "10"})
    conn = makini_server._conn("tok")
    store = conn.stores[Entity.ASSETS]
    assert store._cache, "page cached"
    # Other tokens with the same settings share the cached page.
    _, other, _ = await client.call("GET", "/api/v1/assets", "tok2", params={"page_size": "10"})
    assert other == first
    makini_server.update("tok", "assets", "ast_000000", {"name": "fresh"})
    _, again, _ = await client.call("GET", "/api/v1/assets", params={"page_size": "10"})
    assert again["data"][0]["name"] == "fresh"
    _, other, _ = await client.call("GET", "/api/v1/assets", "tok2", params={"page_size": "10"})
    assert other == first


def test_cached_page_cpu_cost_is_small() -> None:
    from makini_async.testing import measure_page_cost

    assert measure_page_cost(300) < 0.001


async def test_concurrent_walks(makini_server: MockMakini, client: Any) -> None:
    walks = await asyncio.gather(*(client.walk("assets", f"t{i}", page_size=17) for i in range(8)))
    for walk in walks:
        assert len(walk) == 100
