"""Input checks at the boundary: base URLs, tokens, record ids, option types."""

from __future__ import annotations

from typing import Any

import pytest

from makini_async import Limits, MakiniPool, Timeouts, errors
from makini_async._wire.requests import check_base_url, is_loopback, valid_token
from tests.fakes import respond
from tests.unit.conftest import TOKEN

PASSWORD = "hunter2-PASSWORD"


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{PASSWORD}@api.makini.io",
        f"https://{PASSWORD}@api.makini.io",
        f"http://user:{PASSWORD}@127.0.0.1:8080",
        f"https://user:{PASSWORD}@api.makini.io:notaport",
        f"https://u:p/{PASSWORD}@api.makini.io",
    ],
)
def test_base_url_with_credentials_is_refused_without_showing_them(url: str) -> None:
    with pytest.raises(errors.UsageError) as info:
        MakiniPool(base_url=url)
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(info.value)


@pytest.mark.parametrize("url", ["http://api.makini.io", "http://10.0.0.8:8080", "http://[::2]"])
async def test_plain_http_is_refused_for_remote_hosts(url: str) -> None:
    pool = MakiniPool(base_url=url)
    with pytest.raises(errors.UsageError, match="allow_insecure_http"):
        await pool.open()
    await pool.close()
    async with MakiniPool(base_url=url, allow_insecure_http=True) as pool:
        assert pool.base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://[::1]:80",
        "http://LOCALHOST.",
        "https://x.io",
    ],
)
async def test_loopback_http_and_https_are_accepted(url: str) -> None:
    check_base_url(url)
    async with MakiniPool(base_url=url) as pool:
        assert not pool.closed


def test_is_loopback() -> None:
    assert is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("127.0.0.1.evil.com")
    assert not is_loopback("localhost.evil.com")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": b"https://x.io"},
        {"base_url": "https://x.io?q=1"},
        {"base_url": "https://x.io#frag"},
        {"timeouts": 5},
        {"limits": {"max_in_flight": 3}},
        {"allow_insecure_http": "yes"},
        {"hooks": 5},
        {"hooks": "logging"},
        {"clock": 5},
        {"sleep": "no"},
        {"rng": 7},
        {"as_dicts": "no"},
        {"on_reauthorization_required": 5},
        {"transport": object()},
    ],
)
def test_bad_option_types_are_usage_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.UsageError):
        MakiniPool(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"max_body_bytes": 0}, {"max_error_body_bytes": "64k"}, {"max_body_bytes": True}]
)
def test_size_limits_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.UsageError):
        Limits(**kwargs)


def test_timeouts_of_the_wrong_type_are_usage_errors() -> None:
    with pytest.raises(errors.UsageError):
        Timeouts(total="60")  # type: ignore[arg-type]


BAD_TOKENS = [
    "",
    "Qx7\u00e9",  # non-ASCII
    "Qx7\x85",  # C1 control
    "Qx7\u202eabc",  # bidi override
    "Qx7\u200babc",  # zero-width space
    "Qx7\ud800",  # lone surrogate
    "Qx7 en",
    "Qx7:en",
    "=Qx7",
    "Qx7=x",
    "Qx7" * 1366,  # over 4096 characters
    b"Qx7",
    ["Qx7"],
    None,
]


@pytest.mark.parametrize("token", BAD_TOKENS, ids=range(len(BAD_TOKENS)))
async def test_bad_tokens_are_refused_without_being_named(make_pool: Any, token: Any) -> None:
    assert not valid_token(token)
    async with make_pool(lambda call: respond(200, {"data": {"id": "a"}})) as (pool, transport):
        with pytest.raises(errors.UsageError) as info:
            pool.connection(token)
        text = str(info.value)
        text.encode("utf-8")
        assert "Qx7" not in text
        assert not transport.calls


@pytest.mark.parametrize("token", ["abc", "A-Z.a_z~0+9/", "tok==", "x" * 4096, TOKEN])
def test_rfc6750_tokens_are_accepted(token: str) -> None:
    assert valid_token(token)


@pytest.mark.parametrize(
    "record_id", ["", ".", "..", " .. ", "\uff0e", "\uff0e\uff0e", "\u2025", " ", 7, None]
)
@pytest.mark.parametrize("method", ["get", "update", "delete"])
async def test_dot_and_empty_record_ids_never_reach_the_server(
    make_pool: Any, method: str, record_id: Any
) -> None:
    async with make_pool(lambda call: respond(200, {"data": {"id": "a"}})) as (pool, transport):
        conn = pool.connection(TOKEN)
        args = (record_id, {"name": "x"}) if method == "update" else (record_id,)
        with pytest.raises(errors.UsageError):
            await getattr(conn, method)("assets", *args)
        assert not transport.calls


@pytest.mark.parametrize("record_id", ["...", "a..b", "../x", ".hidden", "a/b"])
async def test_ids_with_dots_inside_are_sent_encoded(make_pool: Any, record_id: str) -> None:
    async with make_pool(lambda call: respond(200, {"data": {"id": "a"}}), as_dicts=True) as (
        pool,
        transport,
    ):
        await pool.connection(TOKEN).get("assets", record_id)
    path = transport.calls[0].path
    assert path.startswith("/assets/")
    assert "/" not in path[len("/assets/") :]
