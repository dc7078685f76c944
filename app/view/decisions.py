"""The read model: frozen, keyed snapshots of what a widget shows, made without Qt.

``decision_board`` is what the Decisions dock renders: the pending proposals pinned on top (with their countdown,
price and order value), one line per symbol with its current decision, the history, and the cache line in plain
words. Every row has a key, so a widget can update its rows in place and rebuild only when the keys change. Ages and
countdowns come from an explicit ``now`` (the monotonic clock the service and the proposal book use), so a test
states the time instead of waiting for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from app.llm.schema import Action, CacheStatus, Decision
from app.llm.service import AskWindow
from app.market.instruments import Instruments
from app.trading.proposals import OrderEdits, Proposal, ProposalBook

HISTORY_ROWS = 40  # the newest answers that changed something; older ones are in the journal
SERVED = (CacheStatus.HIT, CacheStatus.SIMILAR)


@dataclass(frozen=True, slots=True)
class PendingRow:
    key: str  # the proposal id
    symbol: str
    action: str  # BUY, SELL, CLOSE
    side_text: str  # "10% of equity" / "the whole position"
    price: str  # the price the model saw, in the symbol's precision
    order_value: str | None  # what the order is worth now (quote currency), None while unknown
    order_text: str  # qty, limit, SL/TP in one line
    countdown_s: float
    held: bool  # being modified: it does not expire meanwhile
    badge: str  # the cache status (styles the badge)
    badge_text: str  # "SIMILAR · 14 µs · answer 34 s old"
    confidence: float
    rationale: str  # the first line of the model's reasoning


@dataclass(frozen=True, slots=True)
class SymbolRow:
    key: str  # the symbol
    symbol: str
    action: str  # BUY, SELL, HOLD, CLOSE, ERROR, or "—" before the first answer
    badge: str
    badge_text: str
    age_s: float | None  # since the latest answer (fresh or confirmed by the cache) landed
    action_age_s: float | None  # since this action became the symbol's current one
    confirmations: int  # answers from the cache that repeated this action since then
    fresh: bool  # the latest answer was a model call, not the cache
    standing_text: str  # "HOLD for 4 min · confirmed ×7 by the cache"
    rationale: str
    pending: bool  # this symbol has a proposal waiting for the trader


@dataclass(frozen=True, slots=True)
class HistoryRow:
    key: str  # the answer's sequence number since start: stable while it stays in the history
    symbol: str
    action: str
    badge: str
    badge_text: str
    state_ms: int
    rationale: str


@dataclass(frozen=True, slots=True)
class DecisionBoard:
    pending: tuple[PendingRow, ...]  # newest first
    symbols: tuple[SymbolRow, ...]  # in the feed's symbol order
    history: tuple[HistoryRow, ...]  # newest first, at most HISTORY_ROWS
    cache_line: str
    target: str | None  # the proposal id A / R / M act on now (see ``key_target``)
    target_why: str  # for the trader: why that one, or why none

    @property
    def keys(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """Row keys per section: a widget rebuilds only when these change, else it sets texts."""
        return (tuple(r.key for r in self.pending), tuple(r.key for r in self.symbols),
                tuple(r.key for r in self.history))


class _Service(Protocol):
    """What the board reads of ``app.llm.service.DecisionService``."""

    provider: object
    cache: object | None
    current: dict
    decisions: Iterable[Decision]
    recorded: int

    def recent(self, window_s: float = 3600.0) -> AskWindow: ...


# ----- plain words ----------------------------------------------------------------------------------------------
def duration_text(seconds: float) -> str:
    """A duration as a person says it: "14 s", "3 min", "1.2 h"."""
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    if seconds < 3570:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def latency_text(ms: float) -> str:
    """A latency in the unit that reads best: microseconds for the cache and the rules, ms or s for a model."""
    if ms < 1.0:
        return f"{ms * 1000:,.0f} µs"
    if ms < 10_000:
        return f"{ms:,.0f} ms"
    return f"{ms / 1000:,.1f} s"


def badge_text(d: Decision, extra_age_s: float = 0.0) -> str:
    """The badge with the answer's own latency; a cached answer adds the original's age ("answer 34 s old"), never
    the original call's seconds as if they were its own. ``extra_age_s``: time since it was served."""
    m = d.meta
    parts = [m.cache_status.value]
    if m.cache_status is CacheStatus.ERROR:
        return m.cache_status.value
    parts.append(latency_text(m.latency_ms))
    if m.cache_status in SERVED and m.cache_age_s is not None:
        parts.append(f"answer {duration_text(m.cache_age_s + extra_age_s)} old")
    return " · ".join(parts)


def first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _action(d: Decision) -> str:
    return "ERROR" if d.body is None else d.body.action.value


def _rationale(d: Decision) -> str:
    return first_line(d.meta.error if d.body is None else d.body.rationale)


def audit_text(stats) -> str:
    """How often a fresh model call agreed with a SIMILAR answer the cache served (``CacheStats``)."""
    if not stats.audits:
        return "audit (since start): no checks yet"
    # Since start, not in the hour; and each check is a model call the hour's "model calls" leaves out.
    checks = "1 check, a model call" if stats.audits == 1 else f"{stats.audits} checks, each a model call"
    return f"audit (since start): agrees {stats.audits_agreed / stats.audits * 100:.0f} % of {checks}"


def cache_line(service: _Service, window_s: float = 3600.0) -> str:
    """"last hour: 212 of 240 asks answered from the cache · 28 model calls · saved 3 min and $0.04 · audit (since
    start): agrees 97 % of 35 checks, each a model call"; or why there is no cache."""
    cache = service.cache
    if cache is None:
        if getattr(service.provider, "name", "") == "offline":
            return "offline rules: no cache, answers in microseconds"
        return "cache off: every ask is a model call"
    w = service.recent(window_s)
    span = "last hour" if w.window_s == 3600 else f"last {duration_text(w.window_s)}"
    saved = f"saved {duration_text(w.saved_latency_s)}"
    if w.saved_cost_usd >= 0.005:
        saved += f" and ${w.saved_cost_usd:,.2f}"
    audit = audit_text(cache.stats)
    calls = f"{w.model_calls} model call{'' if w.model_calls == 1 else 's'}"
    errors = f" · {w.errors} failed" if w.errors else ""
    # Asks folded into a model call already running were not answered by the cache: said apart, so the share the
    # cache answered is its own (a slow model folds many).
    folded = w.folded
    waited = f", {folded} by a call already running" if folded else ""
    return (f"{span}: {w.served - folded} of {w.asks} asks answered from the cache{waited} · {calls}{errors} · "
            f"{saved} · {audit}")


# ----- rows -----------------------------------------------------------------------------------------------------
def _pending_row(p: Proposal, instruments: Instruments, now: float,
                 order_of: Callable[[Proposal], OrderEdits | None] | None,
                 price_of: Callable[[str], Decimal | None] | None, held: bool) -> PendingRow:
    d = p.decision
    b = d.body
    assert b is not None  # a proposal is made only from an answer with a body
    inst = instruments.get(d.symbol)
    now_price = price_of(d.symbol) if price_of is not None else None
    edits = order_of(p) if order_of is not None else None
    value = None
    parts: list[str] = []
    if edits is not None:
        ref = edits.limit_price or now_price or p.price
        if ref is not None and edits.qty > 0:
            value = f"{inst.fmt_money(edits.qty * ref)} {inst.quote}".strip()
        parts.append(f"{edits.side.value} {inst.fmt_qty(edits.qty)} {inst.base}".replace("  ", " ").strip())
        if edits.limit_price is not None:
            parts.append(f"limit {inst.fmt_price(edits.limit_price)}")
        if edits.stop_loss_pct is not None:
            parts.append(f"SL {edits.stop_loss_pct:g}%")
        if edits.take_profit_pct is not None:
            parts.append(f"TP {edits.take_profit_pct:g}%")
    side_text = "the whole position" if b.action is Action.CLOSE else f"{b.size_pct:g}% of equity"
    return PendingRow(
        key=p.id, symbol=d.symbol, action=b.action.value, side_text=side_text, price=inst.fmt_price(p.price),
        order_value=value, order_text="  ".join(parts), countdown_s=p.remaining_s(now), held=held,
        badge=d.meta.cache_status.value, badge_text=badge_text(d, max(0.0, now - p.shown_at)),
        confidence=b.confidence, rationale=first_line(b.rationale))


def _symbol_row(symbol: str, current, now: float, pending: bool, cached: bool) -> SymbolRow:
    if current is None:
        return SymbolRow(key=symbol, symbol=symbol, action="—", badge="", badge_text="no answer yet", age_s=None,
                         action_age_s=None, confirmations=0, fresh=False, standing_text="", rationale="",
                         pending=pending)
    d = current.decision
    age = max(0.0, now - current.updated_at)
    since = max(0.0, now - current.action_since)
    standing = f"{_action(d)} for {duration_text(since)}"
    n = current.confirmations
    if n:  # without a cache (the offline rules) a repeat is the same rules on the same closed bars, not the cache
        standing += f" · confirmed ×{n} by the cache" if cached else f" · same answer ×{n}"
    return SymbolRow(
        key=symbol, symbol=symbol, action=_action(d), badge=d.meta.cache_status.value, badge_text=badge_text(d, age),
        age_s=age, action_age_s=since, confirmations=n, fresh=current.fresh, standing_text=standing,
        rationale=_rationale(d), pending=pending)


def _history_rows(service: _Service, limit: int) -> tuple[HistoryRow, ...]:
    decisions = list(service.decisions)
    first_seq = service.recorded - len(decisions)  # the deque keeps the newest; sequence numbers stay put
    rows = []
    for i in range(len(decisions) - 1, max(-1, len(decisions) - 1 - limit), -1):
        d = decisions[i]
        rows.append(HistoryRow(key=str(first_seq + i), symbol=d.symbol, action=_action(d),
                               badge=d.meta.cache_status.value, badge_text=badge_text(d), state_ms=d.state_ms,
                               rationale=_rationale(d)))
    return tuple(rows)


def key_target(pending: Iterable[Proposal], symbol: str | None, selected: str | None) -> tuple[str | None, str]:
    """What A / R / M act on: the newest pending proposal of the symbol on screen, else the card the trader selected
    (still pending), else nothing, with the reason in words. Never another symbol's proposal the trader has not
    seen or chosen."""
    pending = list(pending)
    mine = [p for p in pending if p.decision.symbol == symbol]
    if mine:
        return mine[-1].id, f"the newest pending proposal for {symbol}"
    chosen = next((p for p in pending if p.id == selected), None)
    if chosen is not None:
        return chosen.id, f"the selected proposal ({chosen.decision.symbol})"
    return None, f"no pending proposal for {symbol}"


def decision_board(service: _Service, proposals: ProposalBook, instruments: Instruments, now: float, *,
                   symbols: Iterable[str] = (), screen_symbol: str | None = None, selected: str | None = None,
                   order_of: Callable[[Proposal], OrderEdits | None] | None = None,
                   price_of: Callable[[str], Decimal | None] | None = None,
                   history: int = HISTORY_ROWS) -> DecisionBoard:
    """The Decisions dock's snapshot at ``now`` (monotonic seconds, the clock of the service and the book).

    ``symbols``: the feed's symbols in display order (a symbol with no answer yet still gets its line);
    ``screen_symbol`` / ``selected``: the symbol on screen and the card the trader clicked, for the key target;
    ``order_of`` / ``price_of``: the order a proposal implies now and a symbol's last price (the trading desk's
    ``implied_edits`` and ``last_price``), for the order value; without them it is left unknown."""
    pending = proposals.pending()
    pending_rows = tuple(_pending_row(p, instruments, now, order_of, price_of, p.held)
                         for p in reversed(pending))
    current = service.current
    order = list(dict.fromkeys([*symbols, *current]))
    waiting = {p.decision.symbol for p in pending}
    cached = service.cache is not None
    symbol_rows = tuple(_symbol_row(s, current.get(s), now, s in waiting, cached) for s in order)
    target, why = key_target(pending, screen_symbol, selected)
    return DecisionBoard(pending=pending_rows, symbols=symbol_rows, history=_history_rows(service, history),
                         cache_line=cache_line(service), target=target, target_why=why)


def seconds_text(value: float | None) -> str:
    """A countdown or an age in whole seconds ("—" when unknown)."""
    if value is None or math.isnan(value):
        return "—"
    return duration_text(value)
