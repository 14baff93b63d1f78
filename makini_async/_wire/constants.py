"""Every default number of the library, in one place."""

from __future__ import annotations

from typing import Final

#: The package's version (``makini_async.__version__``).
VERSION: Final = "0.1.0"

DEFAULT_BASE_URL: Final = "https://api.makini.io"
API_PREFIX: Final = "/api/v1"

# Timeouts, in seconds, per attempt.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_TOTAL_TIMEOUT: Final = 60.0

# Concurrency.
DEFAULT_MAX_IN_FLIGHT: Final = 100
DEFAULT_PER_CONNECTION: Final = 4
DEFAULT_IDLE_EVICT_AFTER: Final = 300.0

# Retries (stamina-shaped: attempts, a total time bound, exponential waits).
DEFAULT_ATTEMPTS: Final = 6
DEFAULT_RETRY_TIMEOUT: Final = 300.0
DEFAULT_WAIT_INITIAL: Final = 1.0
DEFAULT_WAIT_MAX: Final = 30.0
DEFAULT_WAIT_EXP_BASE: Final = 2.0
DEFAULT_JITTER: Final = 1.0
DEFAULT_MAX_RETRY_AFTER: Final = 300.0

# Pool-wide retry budget (gRPC-style retry throttling): each retry costs one
# token, each success refunds ``ratio``; retries stop while the bucket is at or
# below half full, so an outage cannot multiply the load on Makini.
DEFAULT_BUDGET_TOKENS: Final = 1000.0
DEFAULT_BUDGET_RATIO: Final = 0.1

# Pool-wide outage: outage-class failures from this many connections with no
# success in between (within the window) mean the API, not a customer, is down.
DEFAULT_OUTAGE_MIN_CONNECTIONS: Final = 3
# ... and this many failures in a row: random faults never line up for that long.
DEFAULT_OUTAGE_MIN_FAILURES: Final = 10
DEFAULT_OUTAGE_WINDOW: Final = 30.0
# How long the pool waits for the API to come back before every waiting call fails.
DEFAULT_OUTAGE_BUDGET: Final = 300.0
DEFAULT_OUTAGE_PROBE_INTERVAL: Final = 1.0
DEFAULT_OUTAGE_PROBE_INTERVAL_MAX: Final = 15.0

# Circuit breaker, per connection.
DEFAULT_BREAKER_THRESHOLD: Final = 8
DEFAULT_BREAKER_COOLDOWN: Final = 30.0

# Response size caps, in bytes. A body over the cap (on the wire, or once
# inflated) raises ResponseTooLarge; an error answer's body is read only up to
# its own, shorter cap, since only its start is ever used.
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_ERROR_BODY_BYTES: Final = 64 * 1024

# Tokens: RFC 6750 b64token characters, at most this long.
MAX_TOKEN_LENGTH: Final = 4096

# Pagination: a page that times out is retried at half the size, down to this.
MIN_PAGE_SIZE: Final = 10
# After this many fast pages in a row, a page size that had shrunk doubles again.
PAGE_GROW_AFTER: Final = 5
# A listing (or bulk-pull chain) that has fetched this many pages without an
# end is stopped with PaginationError: 100 million records at the smallest
# maximum page size, far beyond any real collection, yet a bound.
MAX_PAGES_PER_LISTING: Final = 1_000_000

USER_AGENT: Final = "makini-async"
