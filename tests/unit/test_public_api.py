"""The public surface: exports are sorted, complete and importable."""

from __future__ import annotations

import importlib

import pytest

import makini_async

MODULES = [
    "makini_async",
    "makini_async.bulk",
    "makini_async.checkpoint",
    "makini_async.errors",
    "makini_async.instrumentation",
    "makini_async.models",
    "makini_async.testing",
    "makini_async.webhooks",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []
    assert len(set(module.__all__)) == len(module.__all__)


def test_every_error_and_config_class_is_exported_at_the_top() -> None:
    from makini_async import errors
    from makini_async._client import config as _config

    for module in (errors, _config):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type):
                assert name in makini_async.__all__, name


def test_typed_marker_is_shipped() -> None:
    from importlib.resources import files

    assert files("makini_async").joinpath("py.typed").is_file()
