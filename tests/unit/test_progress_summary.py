"""The command line's progress estimates, plain lines and failure summary (no terminal needed)."""

from __future__ import annotations

import io

import orjson

from makini_async._progress import Progress, estimate
from makini_async.bulk import ChainReport, Outcome, PullReport
from makini_async.cli._run import PullResult, failures, summary, summary_json
from makini_async.entities import Entity
from makini_async.errors import ReauthorizationRequired, ServiceUnavailable


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
