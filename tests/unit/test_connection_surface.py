"""A connection handle's public names: what a service developer sees, not the machinery."""

from __future__ import annotations

from makini_async import Connection

#: Listed in the service developer's guide (docs/services.md, "A connection's public names");
#: a change here is a change of API.
PUBLIC = {
    # identity and state
    "name", "state", "stats", "needs_reauthorization", "breaker_open", "reset", "is_idle",
    "connection_id", "fingerprint", "requests", "retries", "rate_limited", "failures",
    # the token
    "token", "replace_token", "token_generation", "token_changed_at",
    # calls
    "purchase_orders", "work_orders", "assets", "inventory_items", "vendors", "locations",
    "resource", "list", "get", "create", "update", "delete", "fetch_page", "with_options",
    "info", "sync_status", "trigger_sync", "disconnect",
    # what the bulk pull and the listing build on
    "shared", "sizing",
}  # fmt: skip


def test_the_public_names_of_a_connection_are_pinned() -> None:
    names = {n for n in dir(Connection) if not n.startswith("_")}
    assert names == PUBLIC


def test_the_send_loops_machinery_is_private() -> None:
    for internal in ("begin", "end", "guard", "calm", "set_sticky", "slot", "headers", "secrets"):
        assert not hasattr(Connection, internal), internal
