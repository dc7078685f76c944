"""Is an exchange time plausible? The one value check that needs a clock, so it lives beside the connection.

Adapters are pure: they only know an exchange time is a positive integer of milliseconds. A trade stamped in 2100
is still a positive integer, and it is poison downstream (every timeframe collapses into one bar, every later
trade is "late"; latency recorders overflow). :class:`ExchangeTimeWindow` judges each event against a reference
and names what is wrong, so the connection can drop it with a counted reason. ``screen(events)`` keeps the events
of a frame whose times are plausible and counts the others per reason: one old trade in a batch of fifty costs that
trade, not the batch. A frame that fits as a whole (the usual case) is judged once, by its oldest and newest times.

Two references, chosen by whoever knows where the frames come from (the session):

* **wall** (a live exchange, the synthetic built-in exchange): the local clock. An event may be at most
  ``max_ahead`` in the local clock's future (clock skew, a few minutes) and at most ``max_behind`` in its past
  (a reconnect's snapshot repeats recent trades; a week covers a quiet market). A local clock that is wrong by
  more than ``max_ahead`` shows up as every frame rejected for ``time_ahead_of_clock``: counted, logged, visible.
* **stream** (a replay of a recording, recorded data in tests and benchmarks): frames carry their original times
  (2024 ...), so the wall clock can only say "not in the future" (a recording is of the past). The reference is
  the stream itself: the newest time accepted so far, anchored by the first frame. An event more than
  ``max_ahead`` after it or more than ``max_behind`` before it is rejected (``time_off_stream``) -- a single
  outlier is dropped and the stream goes on. A recording can legitimately jump (the recorder was paused, or
  reconnected an hour later): when the *next* event judged agrees with the rejected one (within ``max_ahead`` of
  it) the stream has moved, not lied, and it is re-anchored there; one event is lost and counted at such a seam.

Only events that carry a time are judged: ``exchange_ms == 0`` means "the exchange sent none" (Binance spot
bookTicker, a REST depth snapshot); adapters refuse a trade without one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

from app.models import MarketEvent

MINUTE_MS = 60_000
DAY_MS = 86_400_000
MAX_AHEAD_MS = 5 * MINUTE_MS
MAX_BEHIND_MS = 7 * DAY_MS

Reference = Literal["wall", "stream"]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class ExchangeTimeWindow:
    """``reject_reason(events)`` -> None when every time is plausible, else a short countable reason."""

    def __init__(
        self,
        reference: Reference = "stream",
        *,
        max_ahead_ms: int = MAX_AHEAD_MS,
        max_behind_ms: int = MAX_BEHIND_MS,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if reference not in ("wall", "stream"):
            raise ValueError(f"reference must be 'wall' or 'stream', not {reference!r}")
        self.reference = reference
        self.max_ahead_ms = max_ahead_ms
        self.max_behind_ms = max_behind_ms
        self._now_ms = now_ms
        self._newest_ms = 0  # stream: newest time accepted so far (0 before the first)
        self._candidate_ms = 0  # stream: the time of the last frame rejected as off the stream
        self.reanchors = 0  # stream: times the stream was found to have moved
        self._ahead_limit_ms = 0  # wall clock + max_ahead, as last read
        self._behind_limit_ms = 0  # wall clock - max_behind, as last read

    def screen(self, events: list[MarketEvent]) -> tuple[list[MarketEvent], Counter[str] | None]:
        """``(events with a plausible time, None)`` when all fit; else ``(the ones that fit, rejected per reason)``.
        Events are judged in the frame's order, so a seam inside a frame is found as between frames."""
        if len(events) == 1:
            reason = self.reject_reason(events)
            return (events, None) if reason is None else ([], Counter({reason: 1}))
        if self._take_whole(events):
            return events, None
        kept: list[MarketEvent] = []
        rejected: Counter[str] = Counter()
        for ev in events:
            reason = self.reject_reason((ev,))
            if reason is None:
                kept.append(ev)
            else:
                rejected[reason] += 1
        return kept, rejected

    def _take_whole(self, events: Sequence[MarketEvent]) -> bool:
        """True, and the stream's anchor moved to the frame's newest time, when every time of the frame is inside
        the window as it stands; False (nothing changed) when one is not: then each event is judged."""
        times = [ms for ev in events if (ms := ev.exchange_ms)]
        if not times:
            return True
        newest, oldest = max(times), min(times)
        if newest > self._ahead_limit_ms:
            self._read_clock()
            if newest > self._ahead_limit_ms:
                return False
        if self.reference == "wall":
            return oldest >= self._behind_limit_ms
        anchor = self._newest_ms
        if self._candidate_ms or oldest < anchor - self.max_behind_ms:
            return False
        if anchor and newest > anchor + self.max_ahead_ms:
            return False
        if newest > anchor:
            self._newest_ms = newest
        return True

    def reject_reason(self, events: Sequence[MarketEvent]) -> str | None:
        """None when every time of ``events`` is plausible, else the reason to refuse them all (see ``screen``)."""
        # Per frame on the hot path: one event is the common case, and the clock is read only when a time passes
        # the last limit computed (the clock only moves forward, so an old limit is stricter, never looser; the
        # lower bound of the wall window may lag by up to max_ahead, which is nothing against days).
        if len(events) == 1:
            newest = oldest = events[0].exchange_ms
        else:
            times = [ms for ev in events if (ms := ev.exchange_ms)]
            if not times:
                return None
            newest, oldest = max(times), min(times)
        if not newest:
            return None
        if newest > self._ahead_limit_ms:
            self._read_clock()
            if newest > self._ahead_limit_ms:  # both references: nothing comes from the local clock's future
                return "time_ahead_of_clock"
        if self.reference == "wall":
            return "time_behind_clock" if oldest < self._behind_limit_ms else None
        anchor = self._newest_ms
        if anchor - self.max_behind_ms <= oldest and newest <= anchor + self.max_ahead_ms and not self._candidate_ms:
            if newest > anchor:  # the usual case, inline: inside the stream's window, nothing pending
                self._newest_ms = newest
            return None
        return self._judge_on_stream(oldest, newest)

    def _read_clock(self) -> None:
        now = self._now_ms()
        self._ahead_limit_ms = now + self.max_ahead_ms
        self._behind_limit_ms = now - self.max_behind_ms

    def _judge_on_stream(self, oldest: int, newest: int) -> str | None:
        anchor = self._newest_ms
        if anchor and (newest > anchor + self.max_ahead_ms or oldest < anchor - self.max_behind_ms):
            candidate = self._candidate_ms
            self._candidate_ms = newest
            if not candidate or abs(newest - candidate) > self.max_ahead_ms:
                return "time_off_stream"
            self.reanchors += 1  # two frames in a row agree: the stream moved (a seam in the recording)
            self._newest_ms = newest
            return None
        self._candidate_ms = 0
        if newest > anchor:
            self._newest_ms = newest
        return None
