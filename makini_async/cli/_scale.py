"""``pull --workers N`` and ``--engine ray``: the pull sharded, with one merged progress."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from makini_async.cli._args import CliError
from makini_async.cli._interrupt import stoppable_run
from makini_async.cli._run import showing_progress
from makini_async.cli._summary import PullResult
from makini_async.errors import CheckpointInUse, UsageError
from makini_async.scale import ProcessEngine, ShardedPull

if TYPE_CHECKING:
    from typing import TextIO

    from makini_async.cli._args import PullSettings
    from makini_async.cli._interrupt import Interrupts
    from makini_async.entities import Entity
    from makini_async.scale import Engine

__all__ = ["run_sharded"]


def _engine(settings: PullSettings) -> Engine:
    if settings.engine == "ray":
        from makini_async.scale import RayEngine  # noqa: PLC0415 - the optional extra

        return RayEngine(settings.ray_address, workers=settings.workers)
    return ProcessEngine(settings.workers)


def _pool_options(settings: PullSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "as_dicts": not settings.typed,
        "allow_insecure_http": settings.allow_insecure_http,
    }
    for name in ("base_url", "timeouts", "retry"):
        value = getattr(settings, name)
        if value is not None:
            options[name] = value
    return options


async def run_sharded(
    settings: PullSettings, *, stream: TextIO, isatty: bool, interrupts: Interrupts | None = None
) -> PullResult:
    """Shard the pull over the engine's workers; progress and summary cover them all."""
    sink = settings.sink if settings.sink is not None else f"jsonl:{settings.out}"
    try:
        pull = ShardedPull(
            list(settings.entities),
            list(settings.connections),
            sink=sink,
            engine=_engine(settings),
            checkpoint=settings.checkpoint,
            pool_options=_pool_options(settings),
            as_dicts=not settings.typed,
            options=settings.options,
            tune=settings.tune,
        )
    except UsageError as exc:
        raise CliError(exc.message) from None
    try:
        async with showing_progress(
            pull.report, stream, isatty=isatty, interval=settings.progress_interval
        ):
            if interrupts is None:
                await pull.run()
            else:
                await stoppable_run(pull, interrupts)
    except (UsageError, CheckpointInUse) as exc:
        raise CliError(exc.message) from None
    per_entity: Counter[Entity] = Counter()
    invalid: Counter[Entity] = Counter()
    for chain in pull.report.chains:
        per_entity[chain.entity] += chain.records
        invalid[chain.entity] += chain.invalid
    kind = "postgresql" if "://" in sink else sink.partition(":")[0]
    return PullResult(
        pull.report,
        pull.location,
        {},
        dict(per_entity),
        {},
        dict(invalid),
        kind,
        tuned=pull.tuned,
        units=tuple((u.unit, u.attempts, u.node) for u in pull.units),
    )
