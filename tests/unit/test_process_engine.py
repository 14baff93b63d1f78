"""ProcessEngine's fork server: what it preloads, and that warm_up waits for it."""

from __future__ import annotations

import multiprocessing

import pytest

from tests.fakes import run_fresh

pytestmark = pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(), reason="no fork server here"
)

_PRELOAD = """
import json, multiprocessing, sys
from multiprocessing import forkserver
if sys.argv[1] != "default":
    multiprocessing.set_forkserver_preload(sys.argv[1].split(","))
from makini_async.scale import ProcessEngine
from makini_async.scale import _process
ProcessEngine(workers=1).warm_up()
print(json.dumps({
    "preload": forkserver._forkserver._preload_modules,
    "ready": _process._ready_server == forkserver._forkserver._forkserver_pid,
}))
"""


def _preload(user: str) -> dict[str, object]:
    return run_fresh(_PRELOAD, user)


def test_the_worker_is_added_to_the_applications_own_preload_list() -> None:
    got = _preload("json,decimal")
    assert got["preload"] == ["json", "decimal", "makini_async.scale._worker"]
    assert got["ready"] is True


def test_pythons_default_main_preload_is_left_out() -> None:
    # Some Python versions run the main script's top level in the fork server itself.
    got = _preload("default")
    assert got["preload"] == ["makini_async.scale._worker"]
    assert got["ready"] is True
