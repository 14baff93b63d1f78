from __future__ import annotations

from typing import Any

import pytest

from makini_async._client import retry as _retry


@pytest.fixture(autouse=True)
def _reset_testing_mode() -> Any:
    yield
    _retry.set_testing(False)


# -- a real PostgreSQL server for the sinks' tests ------------------------------------------
# pgserver (in the test extra) ships PostgreSQL's binaries and starts a server in
# under a second: nothing to install by hand, on a developer's machine or in CI.


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers): harmless here.
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def pg_dsn(pg_server: Any, request: pytest.FixtureRequest) -> str:
    """A DSN of a fresh, empty database on the session's server."""
    import re
    import uuid

    name = "t_" + uuid.uuid4().hex[:12]
    pg_server.psql(f"CREATE DATABASE {name};")
    base = pg_server.get_uri()
    return re.sub(r"/postgres(\?|$)", rf"/{name}\1", base, count=1)
