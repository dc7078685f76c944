"""Exchange adapters: pure modules that know one exchange's URLs, subscribe messages and frame format.

Each exposes ``parse(raw, recv_ns) -> list[MarketEvent]`` and raises ``ParseError`` for a frame it cannot
accept; the connection counts the error by its ``reason`` and goes on (DESIGN rule 3: no I/O here).
"""

from __future__ import annotations


class ParseError(ValueError):
    """A frame that is not valid for this exchange. ``reason`` is a short, countable category."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
