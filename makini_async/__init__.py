"""makini_async: an asyncio-first client for the Makini unified API."""

from __future__ import annotations

__version__ = "0.1.0"
