"""Restart: the one way the terminal's trading state is rebuilt from the journal, after a quit or a crash.

``restore(journal, ...)`` reads the journal (one snapshot, no writes) and decides:

- positions, cash, fees and realised PnL: every fill replayed, in recording order, through ``Portfolio.apply_fill``,
  the very call the live terminal makes (so the numbers are the same to the last digit);
- the last prices and the UTC day's starting equity from the last balance: a restart within the same UTC day
  carries on the day's PnL, and with it the daily loss limit; on a new day the day starts afresh;
- the risk state: the last state the journal recorded (the desk journals every change, however it began: an order
  check, the clock, the kill switch, a resume): HALTED if the kill switch was never followed by a resume; REDUCING if
  the daily loss limit was reached today and not resumed since (latched, even if the price bounced back before the
  stop), or is breached by the restored day PnL; else ACTIVE (a loss limit
  reached on an earlier day is not carried into a new one: the new day has its own limit);
- which open orders resume (limit and stop orders on a symbol this session trades: they were working at the
  exchange) and which are canceled, each with its reason (a market order in flight at the crash belongs to a
  market that is gone; a symbol no longer traded would never be matched). That is paper's rule: its fills happen
  only in this process. At a real exchange (``reconcile=True``, a live broker) an order in flight may have filled
  while the terminal was away and a symbol no longer traded still has its orders working there: every open order
  goes to the broker, whose reconciliation asks the exchange; nothing is canceled locally;
- every id the journal used (its fills, and the orders they belong to or still open): the broker is told
  (``restore_ids``) so that it never numbers a new order or fill with one, nor counts a journaled fill again;
- which proposals were left pending (they are expired: nobody can review a proposal made for a market that moved).

The desk applies the decision (``TradingDesk.resume_from``), recording every cancellation and expiry in the journal
so that every order and proposal ends in a final state. ``summarize_journal`` gives what a fault test or the chaos
script compares: positions, cash, open orders and the risk state, as plain JSON values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from app.models import Fill, Order, OrderStatus, OrderType
from app.trading.journal import Journal, RestartRecords
from app.trading.portfolio import Portfolio, q_money, utc_day_start
from app.trading.risk import RiskState

MARKET_IN_FLIGHT = "a market order in flight when the terminal stopped: its market is gone, canceled at restart"
SYMBOL_NOT_TRADED = "its symbol is not traded in this session: canceled at restart"
PENDING_AT_RESTART = "still pending when the terminal restarted"
PENDING_AT_QUIT = "still pending when the terminal was closed"
Q8 = Decimal("1e-8")


@dataclass(slots=True)
class Restored:
    """The state a restarted terminal starts from, and what the restart must still write to the journal."""

    portfolio: Portfolio
    resumed_orders: list[Order]  # working again at once, oldest first
    canceled_orders: list[Order]  # final state CANCELED, reason in reject_reason; to be journaled
    pending_proposals: list[str]  # to be journaled as EXPIRED
    risk_state: RiskState
    risk_reason: str
    fills_replayed: int = 0
    order_ids: list[str] = field(default_factory=list)  # for ``Broker.restore_ids``
    fill_ids: list[str] = field(default_factory=list)  # every journaled fill: never counted twice
    day_carried: bool = False  # the day's starting equity came from the journal (same UTC day)
    notes: list[str] = field(default_factory=list)  # what the log should say about this restart


def restore(
    journal: Journal,
    *,
    starting_cash: Decimal,
    symbols: Iterable[str],
    daily_loss_limit: Decimal,
    now_ms: int,
    reconcile: bool = False,
) -> Restored:
    """Rebuild the trading state from ``journal`` (read only); see the module docstring. ``reconcile``: the broker
    settles every open order with the exchange (live), so none is canceled here."""
    records = journal.restart_records()
    portfolio = _portfolio(records, starting_cash, now_ms)
    traded = set(symbols)
    resumed: list[Order] = []
    canceled: list[Order] = []
    fills_of: dict[str, list[Fill]] = {}
    for fill in records.fills:
        fills_of.setdefault(fill.order_id, []).append(fill)
    for order in records.open_orders:
        order = _as_filled(order, fills_of.get(order.id, []))
        reason = None if reconcile else _why_not_resumed(order, traded)
        if reason is None:
            resumed.append(order)
        else:
            canceled.append(replace(order, status=OrderStatus.CANCELED, reject_reason=reason, updated_ms=now_ms))
    state, why = _risk_state(records, portfolio, daily_loss_limit, now_ms)
    restored = Restored(
        portfolio=portfolio,
        resumed_orders=resumed,
        canceled_orders=canceled,
        pending_proposals=records.pending_proposals,
        risk_state=state,
        risk_reason=why,
        fills_replayed=len(records.fills),
        order_ids=list(dict.fromkeys([*(f.order_id for f in records.fills), *(o.id for o in records.open_orders)])),
        fill_ids=[f.id for f in records.fills],
        day_carried=portfolio.day_start_ms is not None,
    )
    if canceled:
        restored.notes.append(f"{len(canceled)} orders that cannot resume canceled")
    if reconcile and resumed:
        restored.notes.append(f"{len(resumed)} open orders to be settled with the exchange")
    if records.pending_proposals:
        restored.notes.append(f"{len(records.pending_proposals)} pending proposals expired")
    return restored


def _portfolio(records: RestartRecords, starting_cash: Decimal, now_ms: int) -> Portfolio:
    portfolio = Portfolio(starting_cash=starting_cash)
    last_fill_price: dict[str, Decimal] = {}
    for fill in records.fills:
        portfolio.apply_fill(fill)
        last_fill_price[fill.symbol] = fill.price
    # The replay has no market prices between fills, so its curve and its day roll mean nothing: start both again.
    portfolio.reset_curve()
    balance = records.last_balance
    marks = dict(last_fill_price)
    if balance is not None:
        marks.update(balance.marks)  # the prices seen last, more recent than any fill
    for symbol, price in marks.items():
        portfolio.mark(symbol, price)
    today = utc_day_start(now_ms)
    if (
        balance is not None
        and balance.day_start_ms == today
        and balance.day_start_equity is not None
    ):
        portfolio.resume_day(today, balance.day_start_equity)
    else:
        portfolio.resume_day(None, portfolio.equity())  # a new day (or an old journal): it starts at the next event
    return portfolio


def _as_filled(order: Order, fills: list[Fill]) -> Order:
    """The order as its journaled fills have it. A crash between a fill's record and its order's update leaves the
    order row behind its fills: the fills are what the portfolio holds, so they are what the broker must count
    (a live broker takes that quantity as already counted, and the fills' ids as never to count again)."""
    qty = sum((f.qty for f in fills), Decimal(0))
    if qty <= order.filled_qty:
        return order
    notional = sum((f.qty * f.price for f in fills), Decimal(0))
    return replace(order, status=OrderStatus.PARTIALLY_FILLED, filled_qty=qty,
                   avg_price=(notional / qty).quantize(Q8, rounding=ROUND_HALF_EVEN),
                   fees=sum((f.fee for f in fills), Decimal(0)))


def _why_not_resumed(order: Order, traded: set[str]) -> str | None:
    if order.request.type is OrderType.MARKET:
        return MARKET_IN_FLIGHT
    if order.symbol not in traded:
        return SYMBOL_NOT_TRADED
    return None


def _risk_state(
    records: RestartRecords, portfolio: Portfolio, daily_loss_limit: Decimal, now_ms: int
) -> tuple[RiskState, str]:
    control = records.risk_control  # the desk journals every change of state as STATE, after a KILL or RESUME
    if control is not None and (control.kind == "KILL" or (control.kind, control.code) == ("STATE", "HALTED")):
        return RiskState.HALTED, "the kill switch was on when the terminal stopped; resume to trade again"
    if (
        control is not None
        and control.kind == "STATE"
        and control.code == RiskState.REDUCING.value
        and utc_day_start(control.at_ms) == utc_day_start(now_ms)
    ):
        return RiskState.REDUCING, "the daily loss limit was reached today before the restart"
    if portfolio.day_start_ms is not None:
        day_pnl = q_money(portfolio.equity() - portfolio.day_start_equity)
        if day_pnl <= -daily_loss_limit:
            return RiskState.REDUCING, f"the day's loss {-day_pnl} is at the daily limit {daily_loss_limit}"
    return RiskState.ACTIVE, "restored"


# ----- what a fault test compares -------------------------------------------------------------------------------


def summary(portfolio: Portfolio, open_orders: Iterable[Order], risk_state: RiskState) -> dict[str, Any]:
    """Positions (non-zero), cash, open order ids and the risk state as JSON values (Decimals as exact text):
    equal summaries mean a terminal would trade on from the same state."""
    return {
        "positions": {
            p.symbol: {"qty": str(p.qty), "avg_price": str(p.avg_price), "realized_pnl": str(p.realized_pnl)}
            for p in sorted(portfolio.positions, key=lambda p: p.symbol)
            if p.qty != 0
        },
        "cash": str(portfolio.cash),
        "open_orders": sorted(o.id for o in open_orders),
        "risk_state": risk_state.value,
    }


def summarize_journal(
    path: Path,
    *,
    starting_cash: Decimal,
    symbols: Iterable[str],
    daily_loss_limit: Decimal,
    now_ms: int,
) -> dict[str, Any]:
    """The summary of the state a terminal restarted on the journal at ``path`` would start from. No record is written
    (a file of an older schema is migrated, as the terminal would). Pass the settings the terminal runs with
    (starting cash, symbols, daily loss limit): they are part of what it restores."""
    with Journal(path) as journal:
        r = restore(journal, starting_cash=starting_cash, symbols=symbols, daily_loss_limit=daily_loss_limit,
                    now_ms=now_ms)
    return summary(r.portfolio, r.resumed_orders, r.risk_state)
