"""Every Python example in the README and on the documentation site runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Fenced blocks, at the margin or indented under a list item (dedented to run).
_FENCE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _blocks(path: Path) -> list[str]:
    return [textwrap.dedent(block) for block in _FENCE.findall(path.read_text())]


EXAMPLES = [
    pytest.param(code, id=f"{path.relative_to(ROOT)}-{i}")
    for path in DOCUMENTS
    for i, code in enumerate(_blocks(path))
]


def test_readme_has_an_example_for_each_kind_of_user() -> None:
    readme = _blocks(ROOT / "README.md")
    assert len(readme) >= 2
    assert any("with_options" in code for code in readme)  # a service's bounded call
    assert any("pool.pull(" in code for code in readme)  # a sync job's pull


def test_the_site_has_examples_on_every_guide() -> None:
    for name in ("services.md", "bulk.md", "scaling.md", "webhooks.md"):
        assert _blocks(ROOT / "docs" / name), name


def test_the_readme_stays_a_first_read() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 220


@pytest.mark.parametrize("code", EXAMPLES)
def test_documented_example_runs(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
