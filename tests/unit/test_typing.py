"""What a user's mypy sees: typed resources, typed pulls, and mistakes it catches.

mypy runs on ``tests/typing/user_code.py``; every ``reveal_type(...)  # T``
line there must reveal ``T`` (module paths dropped), every line marked
``# error:`` must be an error, and nothing else may be one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

USER_CODE = Path(__file__).parent.parent / "typing" / "user_code.py"
_QUALIFIED = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])")


def _expectations() -> tuple[dict[int, str], set[int]]:
    reveals: dict[int, str] = {}
    errors: set[int] = set()
    for number, line in enumerate(USER_CODE.read_text().splitlines(), start=1):
        if "reveal_type(" in line:
            reveals[number] = line.split("#", 1)[1].strip()
        elif "# error:" in line:
            errors.add(number)
    return reveals, errors


def test_user_code_types_as_documented() -> None:
    stdout, stderr, _status = api.run(
        ["--strict", "--no-error-summary", "--hide-error-context", str(USER_CODE)]
    )
    assert not stderr
    revealed: dict[int, str] = {}
    failed: set[int] = set()
    for line in stdout.splitlines():
        match = re.match(r".*user_code\.py:(\d+): (note|error): (.*)", line)
        if match is None:
            continue
        number, kind, text = int(match[1]), match[2], match[3]
        if kind == "note" and text.startswith("Revealed type is"):
            revealed[number] = _QUALIFIED.sub("", text.split('"')[1])
        elif kind == "error":
            failed.add(number)
    reveals, errors = _expectations()
    assert revealed == reveals
    assert failed == errors
