from __future__ import annotations

from typing import Any

import pytest

from makini_async import _retry


@pytest.fixture(autouse=True)
def _reset_testing_mode() -> Any:
    yield
    _retry.set_testing(False)
