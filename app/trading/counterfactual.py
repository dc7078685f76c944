"""The counterfactual report with every reviewed proposal in it: the journal scores BUY and SELL
(``Journal.counterfactual_report``); this adds CLOSE, scored as what closing then would have saved or cost against
holding the position to the horizon, and totals both together.

A CLOSE proposal at time t (its state's exchange time) with a position of signed quantity q in the symbol (from the
journal's fills up to the proposal) and the state's last price P0:

- as proposed: closing at P0 instead of holding to the horizon price P1 (the last path price at or before
  t + horizon) saves ``q * (P0 - P1)`` (negative: closing cost that much). Fees are left out: holding ends in a close
  too, so both ways pay about the same fee.
- as taken (approved, modified, auto-approved): the fills of its orders, each ``(fill price - P1)`` per unit closed,
  after their fees.

No position at the time, or no price after it: no score (counted in ``no_data``, like a BUY without prices).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from app.llm.schema import Action
from app.models import Position
from app.trading.journal import (
    CounterfactualReport,
    CounterfactualRow,
    Exit,
    Journal,
    PricePath,
    ProposalRecord,
    ReviewKind,
)
from app.trading.portfolio import apply_to_position

HORIZON_MS = 15 * 60_000
PROPOSAL_LIMIT = 20_000  # the newest proposals read for CLOSE rows (two weeks of one a minute)
ZERO = Decimal(0)


def counterfactual_report(
    journal: Journal,
    path: PricePath,
    *,
    equity: Decimal | None = None,
    horizon_ms: int = HORIZON_MS,
    fee_rate: Decimal = ZERO,
    since_ms: int | None = None,
) -> CounterfactualReport:
    """``Journal.counterfactual_report`` (same arguments) with the reviewed CLOSE proposals added as rows (action
    "CLOSE"), all rows in the order the proposals were made, and the totals over all of them."""
    base = journal.counterfactual_report(path, equity=equity, horizon_ms=horizon_ms, fee_rate=fee_rate,
                                         since_ms=since_ms)
    proposals = journal.proposals(PROPOSAL_LIMIT)
    closes = [p for p in proposals
              if p.review is not None and p.decision.body is not None and p.decision.body.action == Action.CLOSE
              and (since_ms is None or p.created_ms >= since_ms)]
    if not closes:
        return base
    fills = journal.all_fills()
    orders_of: dict[str, list[str]] = {}
    for o in journal.orders_since(0, limit=PROPOSAL_LIMIT):
        if o.request.proposal_id is not None:
            orders_of.setdefault(o.request.proposal_id, []).append(o.id)
    made = {p.id: p.created_ms for p in proposals}
    rows = [*base.rows, *(_close_row(p, path, fills, orders_of.get(p.id, []), horizon_ms) for p in closes)]
    rows.sort(key=lambda r: (made.get(r.proposal_id, r.entry_ms), r.proposal_id))
    return totals(rows, base.equity, horizon_ms)


def totals(rows: list[CounterfactualRow], equity: Decimal, horizon_ms: int) -> CounterfactualReport:
    """The report's sums, as the journal makes them (see CounterfactualReport)."""

    def total(rs: Iterable[CounterfactualRow], attr: str) -> Decimal:
        return sum((v for r in rs if (v := getattr(r, attr)) is not None), ZERO)

    simulated = [r for r in rows if r.sim_pnl is not None]
    taken = [r for r in rows if r.taken]
    rejected = total((r for r in rows if r.kind == ReviewKind.REJECTED), "sim_pnl")
    expired = total((r for r in rows if r.kind == ReviewKind.EXPIRED), "sim_pnl")
    override = sum(((r.actual_pnl or ZERO) - r.sim_pnl for r in simulated if r.sim_pnl is not None), ZERO)
    return CounterfactualReport(
        rows=rows,
        equity=equity,
        horizon_ms=horizon_ms,
        rejected_pnl=rejected,
        expired_pnl=expired,
        missed_pnl=rejected + expired,
        taken_pnl=total(taken, "actual_pnl"),
        taken_sim_pnl=total(taken, "sim_pnl"),
        model_pnl=total(simulated, "sim_pnl"),
        override_value=override,
        no_data=len(rows) - len(simulated),
    )


def _close_row(p: ProposalRecord, path: PricePath, fills: list, order_ids: list[str], horizon_ms: int
               ) -> CounterfactualRow:
    assert p.review is not None
    symbol = p.decision.symbol
    kind = ReviewKind(p.review.kind)
    start = p.decision.state_ms
    end = start + horizon_ms
    last = (p.features or {}).get("last_price")
    entry = None if last is None else _num(last)
    position = Position(symbol)
    for f in fills:  # oldest first: the position the proposal would have closed
        if f.symbol == symbol and f.exchange_ms <= p.created_ms:
            apply_to_position(position, f)
    qty = position.qty
    points = sorted((int(ms), _num(px)) for ms, px in path(symbol, start, end) if start < ms <= end)
    exit_ms, exit_price = points[-1] if points else (None, None)
    score = entry is not None and entry > 0 and qty != 0 and exit_price is not None
    sim = qty * (entry - exit_price) if score else None  # type: ignore[operator]
    actual = fees = None
    if kind.taken and exit_price is not None:
        mine = set(order_ids)
        closing = [f for f in fills if f.order_id in mine]
        fees = sum((f.fee for f in closing), ZERO)
        actual = sum((f.qty * (f.price - exit_price) * (1 if f.side.value == "SELL" else -1) for f in closing),
                     ZERO) - fees
    return CounterfactualRow(
        proposal_id=p.id,
        symbol=symbol,
        action=Action.CLOSE.value,
        kind=kind.value,
        taken=kind.taken,
        entry_ms=start,
        entry_price=entry,
        notional=abs(qty) * entry if entry is not None else ZERO,
        exit_ms=exit_ms if score else None,
        exit_price=exit_price if score else None,
        exit=Exit.HORIZON if score else Exit.NO_DATA,
        sim_pnl_pct=sim / (abs(qty) * entry) * 100 if sim is not None and entry else None,
        sim_pnl=sim,
        actual_pnl=actual,
        actual_pnl_pct=None,
        actual_fees=fees,
        open_qty=qty,  # the position the proposal meant to close (0: nothing to close)
    )


def _num(v: float | int | Decimal) -> Decimal:
    """A market price as Decimal through its shortest repr (60000.1 -> Decimal('60000.1')), as the journal does."""
    return v if isinstance(v, Decimal) else Decimal(str(v))
