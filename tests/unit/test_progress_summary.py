"""The command line's progress estimates, plain lines and failure summary (no terminal needed)."""

from __future__ import annotations

import io

import orjson

from makini_async.bulk import ChainReport, Outcome, PullReport
from makini_async.cli._progress import Progress, estimate
from makini_async.cli._run import PullResult
from makini_async.cli._summary import causes, failures, summary, summary_json
from makini_async.entities import Entity
from makini_async.errors import (
    ReauthorizationRequired,
    ServiceUnavailable,
    SinkError,
    SinkUnavailable,
)


def _clock() -> float:
    return 100.0


def _chain(name: str, entity: Entity, **kw: object) -> ChainReport:
    return ChainReport(connection=name, entity=entity, clock=_clock, **kw)  # type: ignore[arg-type]


def test_estimate_counts_chains_not_started_as_their_average() -> None:
    chains = [
        _chain("a", Entity.ASSETS, records=50, total=100, started_at=1.0),
        _chain("b", Entity.ASSETS, records=300, total=300, started_at=1.0),
        _chain("c", Entity.ASSETS),  # not started: counted as the average, 200
    ]
    assert estimate(chains) == (350, 600)
    assert estimate([_chain("x", Entity.ASSETS, records=7, started_at=1.0)]) == (7, None)
    finished = _chain("d", Entity.ASSETS, records=90, total=100, outcome=Outcome.COMPLETED)
    assert estimate([finished]) == (90, 90)  # a finished chain delivered what it delivered


def test_plain_progress_line_has_the_expected_total_and_eta() -> None:
    report = PullReport(
        [_chain("a", Entity.ASSETS, records=50, total=100, started_at=0.0)],
        started_at=90.0,
        clock=_clock,
    )
    stream = io.StringIO()
    Progress(report, stream, isatty=False).update()
    line = stream.getvalue()
    assert line.endswith("\n")
    assert "records=50" in line
    assert "expected_records~100 percent=50 eta=10s" in line


def _failed_report() -> PullReport:
    reauth = [
        _chain(
            "plant-2",
            e,
            outcome=Outcome.REAUTHORIZATION_REQUIRED,
            error=ReauthorizationRequired(
                "the customer must reconnect", request_id=f"req_{e.name}"
            ),
        )
        for e in (Entity.ASSETS, Entity.WORK_ORDERS, Entity.VENDORS)
    ]
    down = _chain(
        "plant-9",
        Entity.ASSETS,
        outcome=Outcome.FAILED,
        error=ServiceUnavailable("temporarily unavailable " * 12, request_id="req_9"),
    )
    ok = _chain("plant-1", Entity.ASSETS, outcome=Outcome.COMPLETED, records=5)
    return PullReport([ok, *reauth, down], started_at=0.0, finished_at=10.0, clock=_clock)


def test_failures_are_grouped_by_connection_and_reason() -> None:
    report = _failed_report()
    groups = failures(report)
    assert [(g["connection"], g["entities"]) for g in groups] == [
        ("plant-2", ["assets", "work-orders", "vendors"]),
        ("plant-9", ["assets"]),
    ]
    result = PullResult(report, "/data", {}, {Entity.ASSETS: 5}, {}, {}, "jsonl")
    text = summary(result, [])
    assert "Failed connections: 2" in text
    assert text.count("the customer must reconnect") == 1  # once, not once per entity
    assert "entities: assets, work-orders, vendors" in text
    assert max(len(line) for line in text.splitlines() if "unavailable" in line) <= 100
    assert "Data landed in (jsonl): /data" in text
    data = orjson.loads(summary_json(result, []))
    assert data["connections"]["failed"] == ["plant-2", "plant-9"]
    assert data["ok"] is False


def _many_failures(count: int) -> PullReport:
    chains = []
    for i in range(count):
        name = f"plant-{i:03d}"
        for entity in (Entity.ASSETS, Entity.WORK_ORDERS):
            error = SinkError(
                f"connection {name}: cannot write /data/unit-{i:05d}/{entity.value}.jsonl after "
                f"{i % 4 + 1} attempts: disk full at 0x7f3a{i:08x}",
                request_id=f"req_{i:06x}",
            )
            chains.append(_chain(name, entity, outcome=Outcome.FAILED, error=error))
    timeout = _chain(
        "plant-x",
        Entity.ASSETS,
        outcome=Outcome.FAILED,
        error=ServiceUnavailable("read timeout after 3.0s", request_id="req_x"),
    )
    ok = _chain("plant-ok", Entity.ASSETS, outcome=Outcome.COMPLETED, records=5)
    return PullReport([ok, *chains, timeout], started_at=0.0, finished_at=10.0, clock=_clock)


def test_failures_sharing_a_cause_read_as_one_entry() -> None:
    report = _many_failures(300)
    result = PullResult(report, "/data", {}, {Entity.ASSETS: 5}, {}, {}, "jsonl")
    text = summary(result, [])
    part = text.split("Failed connections:", 1)[1].split("Total:", 1)[0]
    assert part.splitlines()[0] == " 301 (2 causes)"
    # Two causes: a head line, the message and an examples line each (the message may wrap).
    assert len(part.strip().splitlines()) <= 9
    assert (
        "  300 connections: failed SinkError\n      connection <connection>: cannot write" in part
    )
    assert "e.g. plant-000, plant-001, plant-002 and 297 more; entities: assets, work-orders" in (
        " ".join(part.split())
    )
    assert (
        "  1 connection: failed SERVICE_UNAVAILABLE\n"
        "      read timeout after 3.0s (request_id=req_x)\n"
        "      plant-x; entities: assets\n"
    ) in part
    assert "plant-x; entities: assets" in part
    data = orjson.loads(summary_json(result, []))
    # Every failure is kept, and the groups beside them.
    assert len(data["failures"]) == 301
    assert {f["connection"] for f in data["failures"]} == {
        *(f"plant-{i:03d}" for i in range(300)),
        "plant-x",
    }
    big, small = data["failure_groups"]
    assert big["connections"] == 300
    assert big["chains"] == 600
    assert big["examples"] == ["plant-000", "plant-001", "plant-002"]
    assert big["error"] == "SinkError"
    assert big["cause"] == (
        "connection <connection>: cannot write /data/unit-N/<entity>.jsonl after N attempts: "
        "disk full at <id>"
    )
    assert small["connections"] == 1
    assert small["code"] == "SERVICE_UNAVAILABLE"


def test_causes_differ_by_outcome_code_and_message() -> None:
    chains = [
        _chain("a", Entity.ASSETS, outcome=Outcome.FAILED, error=SinkError("disk full")),
        _chain("b", Entity.ASSETS, outcome=Outcome.FAILED, error=SinkError("permission denied")),
        _chain(
            "c",
            Entity.ASSETS,
            outcome=Outcome.FAILED,
            error=ServiceUnavailable("permission denied"),
        ),
        _chain("d", Entity.ASSETS, outcome=Outcome.CANCELLED),
    ]
    report = PullReport(chains, clock=_clock)
    groups = report.failure_groups()
    assert sorted((g.code, g.cause, g.connections) for g in groups) == [
        ("-", "", ("d",)),
        ("SERVICE_UNAVAILABLE", "permission denied", ("c",)),
        ("SinkError", "disk full", ("a",)),
        ("SinkError", "permission denied", ("b",)),
    ]
    # A chain cancelled without an error of its own (a signal, the end of the pull) is
    # no failure of its connection: the printed summary leaves it out of the causes.
    assert sorted(g.code for g in causes(report)) == [
        "SERVICE_UNAVAILABLE",
        "SinkError",
        "SinkError",
    ]


def test_a_sink_outage_is_one_line_not_a_failure_per_connection() -> None:
    chains = [
        _chain(
            f"plant-{i}",
            Entity.ASSETS,
            outcome=Outcome.FAILED,
            error=SinkUnavailable(f"sink unavailable: connection refused (attempt {i})"),
        )
        for i in range(50)
    ]
    chains.append(_chain("plant-ok", Entity.ASSETS, outcome=Outcome.COMPLETED, records=5))
    report = PullReport(chains, started_at=0.0, finished_at=1.0, clock=_clock)
    result = PullResult(report, "db", {}, {Entity.ASSETS: 5}, {}, {}, "postgresql")
    text = summary(result, [])
    assert "Failed connections: 0" in text
    outage = [line for line in text.splitlines() if "sink unavailable" in line]
    assert len(outage) == 1
    assert outage[0].startswith("sink unavailable: ")
    assert "50 chains stopped" in outage[0]
    data = orjson.loads(summary_json(result, []))
    assert data["ok"] is False
    assert data["sink_unavailable"].startswith("connection refused")
    assert len(data["failures"]) == 50  # every one kept for schedulers
