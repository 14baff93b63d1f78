"""Session-wide token scan: no test token may reach a log record or a written file.

Every log record emitted during the session is kept (a DEBUG handler on the
root logger, independent of ``caplog``) with the test that was running, and so
is everything a test printed (pytest's captured stdout and stderr: summaries,
progress lines, reports). At the end, those and every file under the
session's pytest temporary directory are searched for the tokens the tests
use; one hit fails the session and is reported by test and place, never
showing a whole token.

The tokens searched for are:

- anything shaped like the suite's test tokens (:data:`SECRET_PATTERN`:
  ``tok_live_...``, ``tok_secret_...``, ``tok_integration_...``, ``...SECRET...``);
- the ``TOKEN``/``TOKENS``/``*SECRET*`` string constants (12 characters or
  more) of every test module that was imported;
- tokens registered with the ``secret_token`` fixture.

Files that are token lists the tests wrote as input (every line ``token`` or
``name,token``, possibly with one more word) are not searched.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

SECRET_PATTERN: Final = re.compile(
    r"tok_(?:live|secret|integration)_[A-Za-z0-9_]{6,}|[A-Za-z0-9_]*SECRET[A-Za-z0-9_]{6,}"
)
_MIN_LENGTH: Final = 12
_CHUNK: Final = 8 * 1024 * 1024
_STANDARD_ATTRS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class _State:
    current = "<session start>"
    basetemp: Path | None = None
    registered: set[str] = set()  # noqa: RUF012 - one per session
    leaks: list[str] = []  # noqa: RUF012


class _Collector(logging.Handler):
    """Keeps ``(test, logger, text)`` for every record of the session."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str, str]] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a broken record is still searched, as far as it goes
            text = f"{record.msg!r} {record.args!r}"
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        if extra:
            text = f"{text} {extra!r}"
        self.records.append((_State.current, record.name, text))


_collector = _Collector()
_root_level: list[int] = []


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    _root_level.append(root.level)
    root.setLevel(logging.DEBUG)
    root.addHandler(_collector)


def pytest_unconfigure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.removeHandler(_collector)
    if _root_level:
        root.setLevel(_root_level.pop())


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _State.current = nodeid


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # What the test printed (a summary, a progress line, a README example's output).
    for section, text in report.sections:
        if section.startswith("Captured std") and text:
            _collector.records.append((report.nodeid, section, text))


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    _State.current = f"<after {nodeid}>"


@pytest.fixture(scope="session", autouse=True)
def _token_scan_basetemp(tmp_path_factory: pytest.TempPathFactory) -> None:
    _State.basetemp = tmp_path_factory.getbasetemp()
    # The installation key of default names: the session's own, not the user's.
    os.environ.setdefault("MAKINI_ASYNC_KEY_FILE", str(_State.basetemp / "makini-async.key"))


@pytest.fixture
def secret_token() -> Callable[[str], str]:
    """``secret_token(value)`` adds a token to the session scan and returns it."""

    def register(value: str) -> str:
        _State.registered.add(value)
        return value

    return register


def known_secrets() -> set[str]:
    """Registered tokens and the token constants of every imported test module."""
    found = set(_State.registered)
    for name, module in list(sys.modules.items()):
        if not name.startswith("tests.") or module is None:
            continue
        for attr, value in vars(module).items():
            if not (attr.isupper() and ("TOKEN" in attr or "SECRET" in attr)):
                continue
            values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
            found.update(v for v in values if isinstance(v, str) and len(v) >= _MIN_LENGTH)
    return found


def _hits(text: str, secrets: Iterable[str]) -> Iterator[str]:
    yield from (m.group() for m in SECRET_PATTERN.finditer(text))
    yield from (s for s in secrets if s in text)


def _shown(token: str) -> str:
    return f"{token[:6]}... ({len(token)} characters)"


def _is_token_list(data: bytes, secrets: Iterable[str]) -> bool:
    """Whether a small text file is a list of tokens a test wrote as input."""
    if len(data) > 64 * 1024:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    found = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        rest = SECRET_PATTERN.sub("", line)
        for secret in secrets:
            rest = rest.replace(secret, "")
        found |= rest != line
        if not re.fullmatch(r"[\w.-]*,?\s*(\s\S+)?", rest):
            return False
    return found


def find_leaks(
    records: Iterable[tuple[str, str, str]], basetemp: Path | None, secrets: set[str]
) -> list[str]:
    """One line per token found in a log record or a file under ``basetemp``."""
    leaks = [
        f"{_shown(hit)} in a log record of logger {logger!r} during {test}"
        for test, logger, text in records
        for hit in _hits(text, secrets)
    ]
    if basetemp is None or not basetemp.is_dir():
        return leaks
    encoded = [(s, s.encode()) for s in secrets]
    pattern = re.compile(SECRET_PATTERN.pattern.encode())
    for path in sorted(p for p in basetemp.rglob("*") if p.is_file() and not p.is_symlink()):
        where = path.relative_to(basetemp)
        try:
            leaks.extend(
                f"{_shown(hit)} in file {where} (written during test {where.parts[0]})"
                for hit in _file_hits(path, pattern, encoded)
            )
        except OSError:
            continue
    return leaks


def _file_hits(
    path: Path, pattern: re.Pattern[bytes], secrets: list[tuple[str, bytes]]
) -> set[str]:
    hits: set[str] = set()
    with path.open("rb") as f:
        first = f.read(_CHUNK)
        if _is_token_list(first, [s for s, _ in secrets]):
            return hits
        tail = b""
        chunk = first
        while chunk:
            data = tail + chunk
            hits.update(m.group().decode() for m in pattern.finditer(data))
            hits.update(s for s, b in secrets if b in data)
            tail = data[-256:]
            chunk = f.read(_CHUNK)
    return hits


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _State.leaks = find_leaks(_collector.records, _State.basetemp, known_secrets())
    if _State.leaks and session.exitstatus in (pytest.ExitCode.OK, 0):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _State.leaks:
        return
    terminalreporter.section("token scan", red=True)
    for line in sorted(set(_State.leaks)):
        terminalreporter.write_line(f"TOKEN LEAK: {line}", red=True)
