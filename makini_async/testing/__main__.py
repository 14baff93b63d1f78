"""``python -m makini_async.testing``: serve the mock Makini API until interrupted."""

from __future__ import annotations

import sys

from makini_async.testing._serve import main

if __name__ == "__main__":
    sys.exit(main())
