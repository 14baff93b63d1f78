"""Show the docstrings' Sphinx roles (``:class:`~a.B```) as the code they name.

The library's docstrings are written for Python's ``help()`` and Sphinx;
mkdocstrings renders them as Markdown, where a role would show as text.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):<code>(~?)([^<]+)</code>")


def _code(match: re.Match[str]) -> str:
    short, name = match.group(1), match.group(2)
    return f"<code>{name.rsplit('.', 1)[-1] if short else name}</code>"


def on_page_content(html: str, **_kwargs: Any) -> str:
    return _ROLE.sub(_code, html)
