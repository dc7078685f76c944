"""The status bar's read model, made without Qt: prices first, then what the trader acts on, each item keyed and
ranked so a narrow window drops the least important items and never the prices.

``status_view`` builds the snapshot from plain values (the caller reads the session); ``SlowWatch`` decides when
the SLOW badge shows: only while a slowness the trader would notice is *sustained* (a stage's p99 over its limit in
most observations of the last minute, for at least half a minute), not for one p99 window, and it goes away once the
stage has stayed under its limit for a while. Times come from an explicit monotonic ``now`` so a test states them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from app.models import FeedState

# Ranks: lower is kept longer when the bar is narrow. Where orders go (PAPER/LIVE) and the prices come first.
RANK_MODE = 0
RANK_PRICES = 1
RANK_FAULT = 2
RANK_FEED = 3
RANK_RISK = 4
RANK_EQUITY = 5
RANK_SLOW = 6
RANK_PENDING = 7
RANK_RATE = 8

# The badge is for what a trader would act on (the window or the feed is visibly late), not the panel's tight
# engineering targets (those colour the performance table): a stage is "slow" at the larger of its panel
# threshold and this floor.
BADGE_FLOOR_MS: dict[str, float] = {"loop_lag": 50.0, "ui_frame": 50.0, "approve_to_fill": 1000.0}
SUSTAIN_WINDOW_S = 60.0  # look at the last minute of observations
SUSTAIN_MIN_S = 30.0  # ... of which at least half a minute must be covered before the badge can show
SUSTAIN_FRACTION = 0.75  # over the limit in at least three quarters of them
RECOVER_S = 15.0  # the badge goes once the stage has been under its limit this long


# The feed's state in the status bar: its word and its level (colour).
FEED_STYLE: dict[FeedState, tuple[str, str]] = {
    FeedState.LIVE: ("LIVE", "ok"),
    FeedState.CONNECTING: ("CONNECTING", "warn"),
    FeedState.RECONNECTING: ("RECONNECTING", "warn"),
    FeedState.STALE: ("STALE", "bad"),
    FeedState.STOPPED: ("STOPPED", "bad"),
}


@dataclass(frozen=True, slots=True)
class StatusItem:
    key: str  # stable identity: "prices", "feed", "rate", "risk", "equity", "fault", "slow", "pending"
    text: str
    level: str = ""  # "ok", "warn", "bad" or "" (plain)
    rank: int = 0  # lower is more important: kept when the bar is narrow
    tooltip: str = ""


@dataclass(frozen=True, slots=True)
class StatusView:
    items: tuple[StatusItem, ...]  # in display order, the hidden ones (empty text) left out

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(i.key for i in self.items)

    def get(self, key: str) -> StatusItem | None:
        return next((i for i in self.items if i.key == key), None)


@dataclass(frozen=True, slots=True)
class SlowBadge:
    text: str  # "⚠ SLOW: loop lag p99 84 ms"
    tooltip: str


def price_text(symbol: str, last: Decimal | None, bid: Decimal | None, ask: Decimal | None,
               fmt_price: Callable[[Decimal], str]) -> str:
    """``BTCUSDT 60,000.00  bid 59,999.90 / ask 60,000.10`` in the instrument's precision; "" before a trade."""
    if last is None:
        return ""
    book = f"  bid {fmt_price(bid)} / ask {fmt_price(ask)}" if bid is not None and ask is not None else ""
    return f"{symbol} {fmt_price(last)}{book}"


def status_view(*, symbol: str, last: Decimal | None = None, bid: Decimal | None = None,
                ask: Decimal | None = None, fmt_price: Callable[[Decimal], str] = str,
                feed_text: str = "", feed_level: str = "warn", feed_tooltip: str = "", rate: float = 0.0,
                risk: str | None = None, equity: Decimal | None = None, day_pnl: Decimal | None = None,
                fmt_money: Callable[[Decimal], str] | None = None,
                fault: tuple[str, str, str] | None = None, slow: SlowBadge | None = None,
                pending: int = 0) -> StatusView:
    """The status bar: prices first; the fault and the feed state; risk; equity; the SLOW badge (``slow``, from a
    ``SlowWatch``, only when sustained); pending proposals; the message rate. ``fault`` is (text, level, tooltip)."""
    money = fmt_money or (lambda v: f"{v:,.2f}")
    items: list[StatusItem] = []
    prices = price_text(symbol, last, bid, ask, fmt_price)
    items.append(StatusItem("prices", prices or f"{symbol} —", "", RANK_PRICES,
                            "The symbol on screen: last trade, best bid / best ask"))
    if fault is not None:
        items.append(StatusItem("fault", fault[0], fault[1], RANK_FAULT, fault[2]))
    if feed_text:
        items.append(StatusItem("feed", f"● {feed_text}", feed_level, RANK_FEED, feed_tooltip))
    if risk:
        level = {"ACTIVE": "ok", "REDUCING": "warn"}.get(risk, "bad")
        items.append(StatusItem("risk", f"RISK {risk}", level, RANK_RISK, "Risk state of the account"))
    if equity is not None:
        day = f"  day {'+' if day_pnl is not None and day_pnl >= 0 else ''}{money(day_pnl)}" \
            if day_pnl is not None else ""
        items.append(StatusItem("equity", f"equity {money(equity)}{day}", "", RANK_EQUITY,
                                "Account equity and today's PnL (all symbols)"))
    if slow is not None:
        items.append(StatusItem("slow", slow.text, "warn", RANK_SLOW, slow.tooltip))
    if pending:
        items.append(StatusItem("pending", f"{pending} pending", "warn", RANK_PENDING,
                                "Proposals waiting for you in the Decisions dock"))
    items.append(StatusItem("rate", f"{rate:,.0f} msg/s", "", RANK_RATE, "Market data messages per second"))
    return StatusView(tuple(items))


def fit_ranks(widths: Mapping[str, int], ranks: Mapping[str, int], available: int, spacing: int = 0) -> set[str]:
    """Which items to show in ``available`` pixels: the most important first (lowest rank), dropping whole items
    from the least important end until the rest fit (never a less important item instead of a more important one).
    The most important item is always shown."""
    shown: set[str] = set()
    used = 0
    for key in sorted(widths, key=lambda k: (ranks.get(k, 99), k)):
        need = widths[key] + (spacing if shown else 0)
        if shown and used + need > available:
            break  # strictly by rank: never a less important item in place of a more important one
        shown.add(key)
        used += need
    return shown


def _ms(ns: float) -> str:
    ms = ns / 1e6
    return f"{ms:,.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


class SlowWatch:
    """Decides when the SLOW badge shows, from one observation per performance refresh (about 1 Hz) of each
    stage's p99 (ns; None when the stage has no samples). Over means p99 above the stage's badge limit (the larger
    of its panel threshold and ``BADGE_FLOOR_MS``). The badge shows a stage once it has been over in at least
    ``SUSTAIN_FRACTION`` of the observations of the last ``SUSTAIN_WINDOW_S``, covering at least
    ``SUSTAIN_MIN_S``; it goes once that stage has been under for ``RECOVER_S``."""

    def __init__(self, thresholds_ms: Mapping[str, float] | None = None, floors_ms: Mapping[str, float] | None = None):
        floors = dict(BADGE_FLOOR_MS if floors_ms is None else floors_ms)
        given = dict(thresholds_ms or {})
        # Only the stages a trader feels get a badge; each at the larger of its panel threshold and its floor.
        self.limits_ns = {k: max(given.get(k, 0.0), floor) * 1e6 for k, floor in floors.items()}
        self._seen: dict[str, deque[tuple[float, bool]]] = {k: deque() for k in self.limits_ns}
        self._last_over: dict[str, float] = {}
        self._last_p99: dict[str, float] = {}
        self.active: set[str] = set()

    def observe(self, now: float, p99_ns: Mapping[str, float | None]) -> SlowBadge | None:
        for name, limit in self.limits_ns.items():
            p99 = p99_ns.get(name)
            if p99 is None:
                continue
            over = p99 > limit
            seen = self._seen[name]
            seen.append((now, over))
            while seen and now - seen[0][0] > SUSTAIN_WINDOW_S:
                seen.popleft()
            if over:
                self._last_over[name] = now
                self._last_p99[name] = p99
            if name in self.active:
                if not over and now - self._last_over.get(name, now) >= RECOVER_S:
                    self.active.discard(name)
                continue
            covered = seen[-1][0] - seen[0][0]
            fraction = sum(o for _, o in seen) / len(seen)
            if over and covered >= SUSTAIN_MIN_S and fraction >= SUSTAIN_FRACTION:
                self.active.add(name)
        return self.badge()

    def badge(self) -> SlowBadge | None:
        if not self.active:
            return None
        names = sorted(self.active, key=list(self.limits_ns).index)
        parts = [f"{n.replace('_', ' ')} p99 {_ms(self._last_p99[n])}" for n in names]
        tooltip = "; ".join(f"{p} (limit {_ms(self.limits_ns[n])}) for most of the last minute"
                            for p, n in zip(parts, names, strict=True))
        return SlowBadge(f"⚠ SLOW: {parts[0]}", tooltip)
