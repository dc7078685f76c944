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

from decimal import Decimal

from app.llm.schema import Action
from app.models import Fill, Position
from app.trading.journal import (
    CounterfactualReport,
    CounterfactualRow,
    Exit,
    Journal,
    PricePath,
    ProposalRecord,
    ReviewKind,
    pending_row,
    report_totals,
)
from app.trading.portfolio import apply_to_position

HORIZON_MS = 15 * 60_000
PROPOSAL_LIMIT = 20_000  # the newest proposals read for CLOSE rows (two weeks of one a minute)
FILL_LIMIT = 20_000  # the fills read for the positions those closes meant to close (as the blotter's history)
ZERO = Decimal(0)


def counterfactual_report(
    journal: Journal,
    path: PricePath,
    *,
    equity: Decimal | None = None,
    horizon_ms: int = HORIZON_MS,
    fee_rate: Decimal = ZERO,
    since_ms: int | None = None,
    fill_limit: int = FILL_LIMIT,
    now_ms: int | None = None,
) -> CounterfactualReport:
    """``Journal.counterfactual_report`` (same arguments) with the reviewed CLOSE proposals added as rows (action
    "CLOSE"), all rows in the order the proposals were made, and the totals over all of them (the journal's rule).

    The positions the closes meant to close come from one pass over the fills, in time order, from the journal's
    last balance before the first close (``Journal.history``: its positions, then at most ``fill_limit`` fills, the
    newest). When there were more, the positions start flat at the first fill read, and a close made before it has
    no score (its position is not known). A proposal whose horizon ends after ``now_ms`` (the time the report is
    made at; None: all are over) is PENDING: listed, not scored at the price of the moment, in no total."""
    base = journal.counterfactual_report(path, equity=equity, horizon_ms=horizon_ms, fee_rate=fee_rate,
                                         since_ms=since_ms, now_ms=now_ms)
    proposals = journal.proposals(PROPOSAL_LIMIT)
    closes = sorted((p for p in proposals
                     if p.review is not None and p.decision.body is not None
                     and p.decision.body.action == Action.CLOSE and (since_ms is None or p.created_ms >= since_ms)),
                    key=lambda p: p.created_ms)
    if not closes:
        return base
    records = journal.history(closes[0].created_ms, fill_limit=fill_limit, order_limit=0)
    fills = sorted(records.fills, key=lambda f: f.exchange_ms)  # stable: the journal's order among equal times
    known_from = fills[0].exchange_ms if records.fills_truncated and fills else None
    orders_of: dict[str, list[str]] = {}
    for o in journal.orders_since(0, limit=PROPOSAL_LIMIT):
        if o.request.proposal_id is not None:
            orders_of.setdefault(o.request.proposal_id, []).append(o.id)
    fills_of: dict[str, list[Fill]] = {}
    for f in fills:
        fills_of.setdefault(f.order_id, []).append(f)
    positions = {s: Position(s, qty, avg) for s, (qty, avg) in records.start_positions.items()}
    rows = list(base.rows)
    i = 0
    for p in closes:  # oldest first, the fills applied up to each close once
        while i < len(fills) and fills[i].exchange_ms <= p.created_ms:
            f = fills[i]
            apply_to_position(positions.setdefault(f.symbol, Position(f.symbol)), f)
            i += 1
        held = positions.get(p.decision.symbol)
        qty = None if known_from is not None and p.created_ms < known_from else held.qty if held else ZERO
        if now_ms is not None and p.decision.state_ms + horizon_ms > now_ms:
            last = (p.features or {}).get("last_price")
            entry = None if last is None else _num(last)
            notional = abs(qty) * entry if qty is not None and entry is not None else ZERO
            rows.append(pending_row(p, Action.CLOSE.value, entry, notional))
            continue
        closing = [f for oid in orders_of.get(p.id, ()) for f in fills_of.get(oid, ())]
        rows.append(_close_row(p, path, qty, closing, horizon_ms))
    made = {p.id: p.created_ms for p in proposals}
    rows.sort(key=lambda r: (made.get(r.proposal_id, r.entry_ms), r.proposal_id))
    return totals(rows, base.equity, horizon_ms, now_ms)


totals = report_totals  # the journal's sums: one rule for both reports


def _close_row(p: ProposalRecord, path: PricePath, qty: Decimal | None, closing: list[Fill], horizon_ms: int
               ) -> CounterfactualRow:
    """``qty``: the position held when the proposal was made (None: not known); ``closing``: its orders' fills."""
    assert p.review is not None
    symbol = p.decision.symbol
    kind = ReviewKind(p.review.kind)
    start = p.decision.state_ms
    end = start + horizon_ms
    last = (p.features or {}).get("last_price")
    entry = None if last is None else _num(last)
    points = sorted((int(ms), _num(px)) for ms, px in path(symbol, start, end) if start < ms <= end)
    exit_ms, exit_price = points[-1] if points else (None, None)
    score = entry is not None and entry > 0 and bool(qty) and exit_price is not None
    sim = qty * (entry - exit_price) if score else None  # type: ignore[operator]
    qty = ZERO if qty is None else qty
    actual = fees = None
    if kind.taken and exit_price is not None:
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
