"""Seeded real-world variation of the mock's records: determinism, rates, shapes."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import random
import re
import signal
import socket
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import orjson
import pytest

from makini_async.entities import Entity
from makini_async.errors import RecordStructureError
from makini_async.models import structure
from makini_async.testing import (
    READABLE_KINDS,
    UNREADABLE_KINDS,
    VARIATION_KINDS,
    MockMakini,
    build_parser,
    parse_instant,
    vary,
)
from makini_async.testing._data import generate_records
from makini_async.testing._variations import VARIATION_EXAMPLES, apply_variations

CONTRACT_ENUMS = {
    "status": {
        "draft", "approved", "sent", "partially_received", "received", "closed", "cancelled",
        "open", "in_progress", "on_hold", "completed",
        "operational", "down", "maintenance", "retired",
    },
    "priority": {"low", "medium", "high", "urgent"},
}  # fmt: skip
OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
FRACTION = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.(\d{1,9})Z$")
MISSING = object()


def resolve(record: Any, path: str) -> Any:
    """The value at ``path`` (``lines[1].unit_price``), or MISSING."""
    value = record
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(value, list) or index >= len(value):
                return MISSING
            value = value[index]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return MISSING
    return value


def varied(
    entity: Entity, count: int = 300, *, variations: float = 1.0, unreadable: float = 1.0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, list[str]]]:
    base = generate_records(entity, 3, count)
    records, log = apply_variations(entity, base, 3, variations=variations, unreadable=unreadable)
    return base, records, log


def entries(log: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    out = []
    for rid, applied in log.items():
        for entry in applied:
            kind, _, path = entry.partition(":")
            out.append((rid, kind, path))
    return out


def test_kind_tables() -> None:
    assert VARIATION_KINDS == READABLE_KINDS + UNREADABLE_KINDS
    assert len(set(VARIATION_KINDS)) == len(VARIATION_KINDS)
    assert set(VARIATION_EXAMPLES) == set(VARIATION_KINDS)


@pytest.mark.parametrize("entity", list(Entity))
def test_zero_rates_leave_the_generator_alone(entity: Entity) -> None:
    base = generate_records(entity, 5, 200)
    records, log = apply_variations(entity, base, 5, variations=0.0, unreadable=0.0)
    assert records is base
    assert log == {}


@pytest.mark.parametrize("entity", list(Entity))
def test_unvaried_records_equal_the_base_and_inputs_are_not_mutated(entity: Entity) -> None:
    base = generate_records(entity, 3, 300)
    snapshot = copy.deepcopy(base)
    records, log = apply_variations(entity, base, 3, variations=0.4, unreadable=0.2)
    assert base == snapshot
    assert [r["id"] for r in records] == [r["id"] for r in base]
    for before, after in zip(base, records, strict=True):
        assert (before == after) == (before["id"] not in log)
        # JSON round trip: every varied record is still plain JSON
        assert orjson.loads(orjson.dumps(after)) == after


def test_vary_never_mutates_its_input() -> None:
    record = generate_records(Entity.PURCHASE_ORDERS, 0, 1)[0]
    snapshot = copy.deepcopy(record)
    for i in range(200):
        new, applied = vary(Entity.PURCHASE_ORDERS, record, random.Random(i), readable=bool(i % 2))
        assert record == snapshot
        assert applied
        assert new["id"] == record["id"]


def test_rates_are_roughly_honoured() -> None:
    n = 3000
    _, _, log = varied(Entity.WORK_ORDERS, n, variations=0.3, unreadable=0.1)
    readable = {rid for rid, kind, _ in entries(log) if kind in READABLE_KINDS}
    unreadable = [rid for rid, kind, _ in entries(log) if kind in UNREADABLE_KINDS]
    assert 0.26 < len(readable) / n < 0.34
    assert 0.08 < len(unreadable) / n < 0.12
    assert len(unreadable) == len(set(unreadable)), "one unreadable variation per record"


def test_raising_one_rate_keeps_the_other_rates_draws() -> None:
    _, _, low = varied(Entity.ASSETS, 500, variations=0.2, unreadable=0.1)
    _, _, high = varied(Entity.ASSETS, 500, variations=0.6, unreadable=0.1)
    bad = {e for e in entries(low) if e[1] in UNREADABLE_KINDS}
    assert bad == {e for e in entries(high) if e[1] in UNREADABLE_KINDS}
    assert {r for r, k, _ in entries(low) if k in READABLE_KINDS} < {
        r for r, k, _ in entries(high) if k in READABLE_KINDS
    }


def test_every_kind_appears_at_a_high_rate() -> None:
    seen = set()
    for entity in Entity:
        _, _, log = varied(entity)
        seen |= {kind for _, kind, _ in entries(log)}
    assert seen == set(VARIATION_KINDS)


def check_readable(kind: str, before: Any, after: Any, path: str) -> None:
    if kind == "datetime_offset":
        assert OFFSET.match(after), after
        assert parse_instant(after) == parse_instant(before)
    elif kind == "datetime_fraction":
        match = FRACTION.match(after)
        assert match, after
        assert after.startswith(before[:-1] + ".")
        assert parse_instant(after) == parse_instant(before)
    elif kind == "datetime_space":
        assert after == before.replace("T", " ")
    elif kind == "datetime_naive":
        assert after == before.removesuffix("Z")
    elif kind == "date_as_datetime":
        assert after[:10] == before
        assert len(after) > 10
        dt.datetime.fromisoformat(after)
    elif kind == "decimal_as_number":
        assert type(after) in (int, float)
        assert Decimal(repr(after)) == Decimal(before)
    elif kind == "null_container":
        assert isinstance(before, (list, dict))
        assert after is None
    elif kind == "unknown_enum":
        assert isinstance(after, str)
        assert after not in CONTRACT_ENUMS[path]
    elif kind == "string_as_number":
        assert type(after) is int
        assert str(after) == re.sub(r"\D", "", before)
    elif kind == "number_as_string":
        assert after == str(before)
    elif kind in ("extra_field", "extra_nested_key"):
        assert before is MISSING
        assert after is not MISSING
    else:  # pragma: no cover - a new kind needs a check here
        pytest.fail(f"no check for {kind}")


def check_unreadable(kind: str, before: Any, after: Any) -> None:
    if kind == "datetime_garbled":
        assert isinstance(after, str)
        assert parse_instant(after) is None
        with pytest.raises(ValueError, match=r"isoformat|out of range"):
            dt.datetime.fromisoformat(after)
    elif kind == "date_garbled":
        assert isinstance(after, str)
        with pytest.raises(ValueError, match=r"isoformat|day is out of range"):
            dt.date.fromisoformat(after)
    elif kind == "decimal_garbled":
        assert isinstance(after, str)
        assert after in ("N/A", "", before.replace(".", ","))
        with pytest.raises(InvalidOperation):
            Decimal(after)
    elif kind == "decimal_as_bool":
        assert isinstance(after, bool)
    elif kind == "object_as_string":
        assert isinstance(before, dict)
        assert isinstance(after, str)
    elif kind == "list_as_object":
        assert isinstance(before, list)
        assert after == {"item": before}
    elif kind == "list_as_number":
        assert isinstance(before, list)
        assert after == len(before)
    else:  # pragma: no cover - a new kind needs a check here
        pytest.fail(f"no check for {kind}")


@pytest.mark.parametrize("entity", list(Entity))
def test_each_variation_has_the_documented_shape(entity: Entity) -> None:
    base, records, log = varied(entity)
    by_id = {r["id"]: (b, r) for b, r in zip(base, records, strict=True)}
    for rid, kind, path in entries(log):
        before, after = by_id[rid]
        assert isinstance(after["id"], str)
        assert after["id"] == rid
        if kind in READABLE_KINDS:
            check_readable(kind, resolve(before, path), resolve(after, path), path)
        else:
            check_unreadable(kind, resolve(before, path), resolve(after, path))


@pytest.mark.parametrize("entity", list(Entity))
def test_a_typed_client_gets_an_invalid_record_not_a_crash(entity: Entity) -> None:
    _, records, log = varied(entity, 200, variations=0.0, unreadable=1.0)
    assert len(log) == len(records)
    for record in records:
        with pytest.raises(RecordStructureError):
            structure(entity, record)


def test_the_examples_are_what_the_functions_produce() -> None:
    for kind, (path, before, after) in VARIATION_EXAMPLES.items():
        if kind in UNREADABLE_KINDS:
            check_unreadable(kind, before, after)
        elif not kind.startswith("extra_"):
            check_readable(kind, before, after, path)
    assert parse_instant("2024-02-30T00:00:00Z") is None
    assert parse_instant("2024-03-01 14:00:00.5+02:00") == parse_instant("2024-03-01T12:00:00Z")


async def raw_pages(server: MockMakini, entity: str, token: str) -> list[bytes]:
    pages = []
    cursor = None
    async with aiohttp.ClientSession() as session:
        while True:
            params = {"page_size": "37", **({"cursor": cursor} if cursor else {})}
            async with session.get(
                f"{server.url}/api/v1/{entity}",
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                assert resp.status == 200
                body = await resp.read()
            pages.append(body)
            cursor = orjson.loads(body)["next_cursor"]
            if not cursor:
                return pages


async def test_same_seed_same_bytes_across_servers(makini_server_factory: Any) -> None:
    settings = {"seed": 11, "records_per_entity": 150, "variations": 0.5, "unreadable": 0.2}
    one = await makini_server_factory(**settings)
    two = await makini_server_factory(**settings)
    plain = await makini_server_factory(seed=11, records_per_entity=150)
    for entity in Entity:
        first = await raw_pages(one, entity.value, "a")
        assert first == await raw_pages(two, entity.value, "b")
        assert first != await raw_pages(plain, entity.value, "a")
        assert one.variations("a", entity) == two.variations("b", entity)


async def test_a_plain_client_walks_varied_data(
    makini_server_factory: Any, make_client: Any
) -> None:
    server = await makini_server_factory(records_per_entity=120, variations=0.5, unreadable=0.2)
    plain = await makini_server_factory(records_per_entity=120)
    client, reference = make_client(server), make_client(plain)
    for entity in Entity:
        got = await client.walk(entity.value, page_size=50)
        base = await reference.walk(entity.value, page_size=50)
        assert [r["id"] for r in got] == [r["id"] for r in base]
        log = server.variations("tok", entity)
        assert log
        assert 0.35 < len(log) / len(got) < 0.8
        for record, original in zip(got, base, strict=True):
            assert (record != original) == (record["id"] in log)
        rid = next(iter(log))
        status, body, _ = await client.call("GET", f"/api/v1/{entity.value}/{rid}")
        assert status == 200
        assert body["data"] == server.record("tok", entity, rid)


async def test_filters_compare_instants_not_spelling(
    makini_server_factory: Any, make_client: Any
) -> None:
    server = await makini_server_factory(records_per_entity=300, variations=1.0)
    plain = await makini_server_factory(records_per_entity=300)
    client, reference = make_client(server), make_client(plain)
    kinds = {e.split(":")[0] for es in server.variations("tok", "work-orders").values() for e in es}
    assert {"datetime_offset", "datetime_space", "datetime_naive"} <= kinds
    for name, value in (
        ("modified_after", "2024-02-15T00:00:00Z"),
        ("created_after", "2024-01-01T12:00:00Z"),
    ):
        got = await client.walk("work-orders", **{name: value})
        want = await reference.walk("work-orders", **{name: value})
        assert [r["id"] for r in got] == [r["id"] for r in want]


async def test_rates_per_connection_and_in_the_cache_key(makini_server_factory: Any) -> None:
    server = await makini_server_factory(records_per_entity=50, variations=0.5)
    server.configure_connection("calm", variations=0.0)
    server.configure_connection("wild", variations=1.0, unreadable=1.0)
    base = generate_records(Entity.VENDORS, 0, 50, dict.fromkeys(Entity, 50))
    assert server.records("calm", "vendors") == base
    assert server.variations("calm", "vendors") == {}
    assert len(server.variations("wild", "vendors")) == 50
    default = server.records("x", "vendors")
    assert default != base
    assert default == server.records("y", "vendors")
    assert server.records("wild", "vendors") != default


def test_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="variations"):
        MockMakini(variations=1.5)
    with pytest.raises(ValueError, match="unreadable"):
        MockMakini(unreadable=-0.1)
    server = MockMakini()
    with pytest.raises(ValueError, match="variations"):
        server.configure_connection("t", variations=2.0)


def test_command_line_options(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["--variations", "0.25", "--unreadable", "0.05"])
    assert (args.variations, args.unreadable) == (0.25, 0.05)
    defaults = build_parser().parse_args([])
    assert (defaults.variations, defaults.unreadable) == (0.0, 0.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--variations", "1.5"])
    assert "invalid rate" in capsys.readouterr().err


async def test_the_command_serves_the_same_varied_data() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "makini_async.testing",
        *("--port", str(port), "--records", "40", "--seed", "4"),
        *("--variations", "0.5", "--unreadable", "0.2"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"listening on" in line, line
        expected = MockMakini(seed=4, records_per_entity=40, variations=0.5, unreadable=0.2)
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"http://127.0.0.1:{port}/api/v1/purchase-orders",
                headers={"Authorization": "Bearer cli"},
            ) as resp:
                assert resp.status == 200
                body = await resp.json()
        assert body["data"] == expected.records("any", "purchase-orders")
        assert body["data"] != MockMakini(seed=4, records_per_entity=40).records(
            "any", "purchase-orders"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err
