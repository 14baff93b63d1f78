"""Every error row of the contract, request ids, writes, idempotency, connection endpoints."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from makini_async.entities import Entity
from makini_async.testing import FaultPlan, MockMakini, RateLimit

if TYPE_CHECKING:
    import aiohttp

REQ_ID = re.compile(r"^req_[0-9a-f]{12}$")


def assert_error(status: int, body: Any, headers: Any, want_status: int, code: str) -> None:
    assert status == want_status, body
    err = body["error"]
    assert set(err) == {"code", "type", "message", "request_id", "details"}
    assert err["code"] == code
    assert isinstance(err["type"], str)
    assert isinstance(err["message"], str)
    assert isinstance(err["details"], dict)
    assert REQ_ID.match(err["request_id"])
    assert headers["X-Request-Id"] == err["request_id"]


async def test_request_id_on_success_and_unique(client: Any) -> None:
    ids = set()
    for path in ("/api/v1/assets", "/api/v1/assets/ast_000001", "/api/v1/connection"):
        status, _, headers = await client.call("GET", path)
        assert status == 200
        assert REQ_ID.match(headers["X-Request-Id"])
        ids.add(headers["X-Request-Id"])
    status, _, headers = await client.call("DELETE", "/api/v1/assets/ast_000001")
    assert status == 204
    assert REQ_ID.match(headers["X-Request-Id"])
    ids.add(headers["X-Request-Id"])
    assert len(ids) == 4


async def test_400_rows(client: Any) -> None:
    assert_error(*(await client.call("GET", "/api/v1/assets", params={"page_size": "x"})),
                 400, "INVALID_REQUEST")  # fmt: skip
    assert_error(*(await client.call("GET", "/api/v1/assets", params={"page_size": "501"})),
                 400, "INVALID_PAGE_SIZE")  # fmt: skip
    status, body, headers = await client.call(
        "POST", "/api/v1/work-orders", json={"priority": "low"}
    )
    assert_error(status, body, headers, 400, "VALIDATION_FAILED")
    assert body["error"]["details"]["fields"] == {"title": ["required"]}
    status, body, headers = await client.call(
        "POST", "/api/v1/work-orders", json={"title": "x", "id": "wo_1", "created_at": "2024"}
    )
    assert_error(status, body, headers, 400, "VALIDATION_FAILED")
    assert body["error"]["details"]["fields"] == {"created_at": ["read-only"], "id": ["read-only"]}
    status, body, headers = await client.call(
        "PATCH", "/api/v1/assets/ast_000001", json={"updated_at": "2030-01-01T00:00:00Z"}
    )
    assert_error(status, body, headers, 400, "VALIDATION_FAILED")
    assert_error(*(await client.call("POST", "/api/v1/assets", data=b"{not json")),
                 400, "INVALID_REQUEST")  # fmt: skip
    assert_error(*(await client.call("POST", "/api/v1/assets", json=[1, 2])),
                 400, "INVALID_REQUEST")  # fmt: skip


async def test_401_authentication_failed(makini_server: MockMakini, client: Any) -> None:
    assert_error(*(await client.call("GET", "/api/v1/assets", None)), 401, "AUTHENTICATION_FAILED")
    for header in ("Basic abc", "Bearer", "Bearer a b", "tok"):
        result = await client.call("GET", "/api/v1/assets", None, headers={"Authorization": header})
        assert_error(*result, 401, "AUTHENTICATION_FAILED")
    makini_server.revoke("revoked")
    assert_error(*(await client.call("GET", "/api/v1/assets", "revoked")),
                 401, "AUTHENTICATION_FAILED")  # fmt: skip
    assert_error(*(await client.call("GET", "/api/v1/connection", "revoked")),
                 401, "AUTHENTICATION_FAILED")  # fmt: skip


async def test_unknown_tokens_rejected_when_not_accepting_any(
    makini_server_factory: Any, make_client: Any
) -> None:
    server = await makini_server_factory(accept_any_token=False)
    server.configure_connection("known")
    client = make_client(server)
    assert (await client.call("GET", "/api/v1/assets", "known"))[0] == 200
    assert_error(*(await client.call("GET", "/api/v1/assets", "stranger")),
                 401, "AUTHENTICATION_FAILED")  # fmt: skip


async def test_401_reauthorization_and_502_offline(makini_server: MockMakini, client: Any) -> None:
    makini_server.configure_connection("re", status="reauthorization_required")
    assert_error(*(await client.call("GET", "/api/v1/assets", "re")),
                 401, "REAUTHORIZATION_REQUIRED")  # fmt: skip
    assert_error(*(await client.call("GET", "/api/v1/sync-status", "re")),
                 401, "REAUTHORIZATION_REQUIRED")  # fmt: skip
    status, body, _ = await client.call("GET", "/api/v1/connection", "re")
    assert status == 200
    assert body["data"]["status"] == "reauthorization_required"
    assert body["data"]["reauthorization_required"] is True
    makini_server.configure_connection("off", status="offline", system="Maximo")
    assert_error(*(await client.call("GET", "/api/v1/assets/ast_000001", "off")),
                 502, "CONNECTED_SYSTEM_ERROR")  # fmt: skip
    status, body, _ = await client.call("GET", "/api/v1/connection", "off")
    assert status == 200
    assert body["data"]["status"] == "offline"
    assert body["data"]["system"] == "Maximo"


async def test_403_404_405_409(makini_server: MockMakini, client: Any) -> None:
    makini_server.configure_connection("limited", denied_entities=[Entity.PURCHASE_ORDERS])
    assert_error(*(await client.call("GET", "/api/v1/purchase-orders", "limited")),
                 403, "PERMISSION_DENIED")  # fmt: skip
    assert (await client.call("GET", "/api/v1/work-orders", "limited"))[0] == 200
    assert_error(*(await client.call("GET", "/api/v1/assets/ast_999999")), 404, "NOT_FOUND")
    assert_error(*(await client.call("GET", "/api/v1/gadgets")), 404, "NOT_FOUND")
    assert_error(*(await client.call("GET", "/api/v2/assets")), 404, "NOT_FOUND")
    assert_error(*(await client.call("GET", "/api/v1/assets/a/b")), 404, "NOT_FOUND")
    assert_error(*(await client.call("PATCH", "/api/v1/assets/ast_999999", json={"name": "x"})),
                 404, "NOT_FOUND")  # fmt: skip
    assert_error(*(await client.call("DELETE", "/api/v1/vendors/ven_999999")), 404, "NOT_FOUND")
    for entity in ("purchase-orders", "work-orders"):
        assert_error(*(await client.call("DELETE", f"/api/v1/{entity}/{entity[:2]}_000001")),
                     405, "OPERATION_NOT_SUPPORTED")  # fmt: skip
    assert_error(*(await client.call("PUT", "/api/v1/assets/ast_000001", json={})),
                 405, "OPERATION_NOT_SUPPORTED")  # fmt: skip
    locked = next(
        r for r in makini_server.records("tok", "work-orders") if r["status"] == "completed"
    )
    result = await client.call("PATCH", f"/api/v1/work-orders/{locked['id']}", json={"title": "x"})
    assert_error(*result, 409, "CONFLICT")


async def test_429_500_502_503(makini_server: MockMakini, client: Any) -> None:
    makini_server.configure_connection("rl", rate_limit=RateLimit(1, 60))
    assert (await client.call("GET", "/api/v1/assets", "rl"))[0] == 200
    status, body, headers = await client.call("GET", "/api/v1/assets", "rl")
    assert_error(status, body, headers, 429, "RATE_LIMIT_EXCEEDED")
    assert int(headers["Retry-After"]) >= 1
    for kind, status_code, code in (
        ("error_500", 500, "INTERNAL_ERROR"),
        ("error_502", 502, "CONNECTED_SYSTEM_ERROR"),
        ("error_503", 503, "SERVICE_UNAVAILABLE"),
    ):
        makini_server.configure_connection(kind, faults=FaultPlan(**{kind: 1.0}))
        assert_error(*(await client.call("GET", "/api/v1/assets", kind)), status_code, code)


async def test_create_read_update_delete(makini_server: MockMakini, client: Any) -> None:
    status, body, _ = await client.call(
        "POST", "/api/v1/work-orders", json={"title": "Fix pump", "x_extra": {"a": 1}}
    )
    assert status == 201
    rec = body["data"]
    assert rec["id"].startswith("wo_")
    assert rec["title"] == "Fix pump"
    assert rec["x_extra"] == {"a": 1}
    assert rec["created_at"] == rec["updated_at"]
    status, body, _ = await client.call("GET", f"/api/v1/work-orders/{rec['id']}")
    assert status == 200
    assert body["data"] == rec
    walked = await client.walk("work-orders")
    assert walked[-1]["id"] == rec["id"]
    status, body, _ = await client.call(
        "PATCH", f"/api/v1/work-orders/{rec['id']}", json={"status": "completed"}
    )
    assert status == 200
    assert body["data"]["status"] == "completed"
    assert body["data"]["completed_at"] is not None
    assert body["data"]["updated_at"] > rec["updated_at"]
    status, _, _ = await client.call(
        "PATCH", f"/api/v1/work-orders/{rec['id']}", json={"title": "y"}
    )
    assert status == 409
    status, body, _ = await client.call("DELETE", "/api/v1/locations/loc_000003")
    assert status == 204
    assert body is None
    assert (await client.call("GET", "/api/v1/locations/loc_000003"))[0] == 404


async def test_required_fields_per_entity(client: Any) -> None:
    for entity, field in (
        ("purchase-orders", "vendor"),
        ("assets", "name"),
        ("inventory-items", "part_number"),
        ("vendors", "name"),
        ("locations", "name"),
    ):
        status, body, _ = await client.call("POST", f"/api/v1/{entity}", json={})
        assert status == 400
        assert body["error"]["details"]["fields"] == {field: ["required"]}


async def test_idempotent_replay(makini_server: MockMakini, client: Any) -> None:
    key = {"Idempotency-Key": "k-1"}
    before = len(makini_server.records("tok", "assets"))
    s1, b1, h1 = await client.call("POST", "/api/v1/assets", json={"name": "A"}, headers=key)
    s2, b2, h2 = await client.call("POST", "/api/v1/assets", json={"name": "A"}, headers=key)
    assert s1 == s2 == 201
    assert b1 == b2
    assert "Idempotent-Replayed" not in h1
    assert h2["Idempotent-Replayed"] == "true"
    assert len(makini_server.records("tok", "assets")) == before + 1
    # Keys are per token.
    s3, b3, _ = await client.call(
        "POST", "/api/v1/assets", "other", json={"name": "A"}, headers=key
    )
    assert s3 == 201
    assert b3["data"]["id"] == b1["data"]["id"]  # same deterministic data, separate insert
    assert len(makini_server.records("other", "assets")) == before + 1
    # PATCH replay does not bump updated_at twice.
    pkey = {"Idempotency-Key": "p-1"}
    _, p1, _ = await client.call(
        "PATCH", "/api/v1/assets/ast_000002", json={"model": "Z"}, headers=pkey
    )
    _, p2, h = await client.call(
        "PATCH", "/api/v1/assets/ast_000002", json={"model": "Z"}, headers=pkey
    )
    assert p1 == p2
    assert h["Idempotent-Replayed"] == "true"
    # Reusing a key for another request is refused.
    status, body, _ = await client.call("PATCH", "/api/v1/assets/ast_000003", json={}, headers=pkey)
    assert status == 400
    assert body["error"]["code"] == "INVALID_REQUEST"


async def test_connection_disconnect(makini_server: MockMakini, client: Any) -> None:
    status, body, _ = await client.call("GET", "/api/v1/connection", "bye")
    assert status == 200
    data = body["data"]
    assert set(data) == {"id", "system", "status", "reauthorization_required", "last_sync_at"}
    assert data["status"] == "active"
    assert data["reauthorization_required"] is False
    assert data["system"] == "SAP"
    assert "bye" not in data["id"]
    status, _, _ = await client.call("DELETE", "/api/v1/connection", "bye")
    assert status == 204
    assert_error(*(await client.call("GET", "/api/v1/assets", "bye")), 401, "AUTHENTICATION_FAILED")
    assert_error(*(await client.call("GET", "/api/v1/connection", "bye")),
                 401, "AUTHENTICATION_FAILED")  # fmt: skip


async def test_sync_endpoints(makini_server_factory: Any, make_client: Any) -> None:
    now = [100.0]
    server = await makini_server_factory(sync_seconds=5.0, clock=lambda: now[0])
    client = make_client(server)
    status, body, _ = await client.call("GET", "/api/v1/sync-status")
    assert status == 200
    entities = body["data"]["entities"]
    assert set(entities) == {e.value for e in Entity}
    assert all(v["status"] == "idle" for v in entities.values())
    status, body, _ = await client.call(
        "POST", "/api/v1/syncs", json={"entity": "work-orders", "full": True}
    )
    assert status == 202
    assert body["data"]["id"].startswith("sync_")
    assert body["data"]["entity"] == "work-orders"
    assert body["data"]["full"] is True
    assert body["data"]["status"] == "running"
    _, body, _ = await client.call("GET", "/api/v1/sync-status")
    assert body["data"]["entities"]["work-orders"]["status"] == "running"
    now[0] += 6
    _, body, _ = await client.call("GET", "/api/v1/sync-status")
    assert body["data"]["entities"]["work-orders"]["status"] == "idle"
    assert body["data"]["entities"]["work-orders"]["last_synced_at"]
    for bad in ({"entity": "gadgets"}, {"entity": "assets", "full": "yes"}, {}):
        status, body, _ = await client.call("POST", "/api/v1/syncs", json=bad)
        assert status == 400
        assert body["error"]["code"] == "INVALID_REQUEST"


async def test_tokens_never_exposed(makini_server: MockMakini, client: Any) -> None:
    secret = "super-secret-token-value"
    await client.call("GET", "/api/v1/assets", secret)
    makini_server.configure_connection(secret, faults=FaultPlan(error_500=0.5))
    await client.call("GET", "/api/v1/assets", secret)
    assert secret not in repr(makini_server)
    assert secret not in repr(makini_server._conn(secret))
    assert secret not in repr(makini_server.request_log)
    assert secret not in repr(makini_server.stats(secret))
    labels = {entry[0] for entry in makini_server.request_log}
    assert makini_server.name_of(secret) in labels
    makini_server.configure_connection(secret, name="acme")
    await client.call("GET", "/api/v1/assets", secret)
    assert makini_server.request_log[-1][0] == "acme"
    assert makini_server.request_log[-1][1:3] == ("GET", "/api/v1/assets")


async def test_request_log_and_reset(makini_server: MockMakini, client: Any) -> None:
    await client.call("GET", "/api/v1/assets", params={"page_size": "3"})
    await client.call("GET", "/api/v1/nothing")
    assert makini_server.total_requests == 2
    log = makini_server.request_log
    assert log[0][2:] == ("/api/v1/assets", "page_size=3", 200)
    assert log[1][4] == 404
    stats = makini_server.stats("tok")
    assert stats.requests == 2
    assert stats.statuses[200] == 1
    assert stats.statuses[404] == 1
    makini_server.reset_stats()
    assert makini_server.total_requests == 0
    assert makini_server.request_log == []
    assert makini_server.stats("tok").requests == 0


async def test_session_fixture_smoke(session: aiohttp.ClientSession) -> None:
    assert not session.closed
