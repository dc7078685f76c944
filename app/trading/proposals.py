"""Proposal lifecycle: pending -> approved | modified | rejected | expired.

A model decision that asks for an order (BUY, SELL, CLOSE) becomes a pending proposal with a deadline. Only the
trader moves it on (or, when the trader turned it on, auto-approve within its own stricter limits). At approval
the price is compared with the proposal's: beyond ``max_drift_pct`` the trader must confirm again, because the
market the model saw is gone.

Sizes: a proposal asks for size % of equity; the order is that value at the current price, rounded down to the
symbol's lot (``app.market.instruments``), a limit price on its tick.

Auto-approve (off unless the trader turns it on) caps what it sends by order VALUE, in the quote currency, not by
the model's size %: a proposal above ``AutoApproveLimits.max_order_value`` is scaled down to that value (on the lot
grid) rather than refused, so an ordinary proposal (the offline rules ask 7.5 %-10 % of equity) can be sent at a
size the trader chose in advance. It refuses (and leaves the proposal to the trader, saying why) a confidence below
``min_confidence``, a CLOSE (closing is the trader's call), no price, and a size that scaled down falls below the
instrument's minimum quantity or value. The risk manager still checks whatever it sends.

Which answers become proposals (``should_propose``). The decision service asks every few seconds and the cache
mostly repeats itself, so a proposal is made only when the decision means something new for the trader: the
symbol's action changed to a trade, or a fresh model answer proposes a trade — never because the cache confirmed
what is already pending. A pending proposal of another action is superseded (EXPIRED, with the reason). An action
the trader rejected is not proposed again for the symbol until the action changes to another trade, or to anything
else on a newer closed bar than the rejected proposal's: a one-ask flicker (BUY -> HOLD -> BUY within seconds, the
same bars) is not a new idea.

Hold. While the trader edits a proposal (Modify) it is held: it never expires and is not refused as expired; when
released without being sent, its deadline becomes at least ``RELEASE_GRACE_S`` from then, unless a newer pending
proposal of another action for the symbol was made meanwhile: then it is superseded by it (EXPIRED, with the reason,
told to ``on_superseded`` so the desk journals it).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from app.llm.schema import Action, Decision
from app.llm.service import DecisionEvent
from app.market.features import MarketState
from app.market.instruments import Instruments
from app.models import OrderOrigin, OrderRequest, OrderType, Side

RELEASE_GRACE_S = 5.0  # a proposal released from a hold lives at least this long (time to press A or R)


class ProposalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    MODIFIED = "MODIFIED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class OrderEdits:
    """What the trader may change before sending (Modify)."""

    side: Side
    qty: Decimal
    type: OrderType  # MARKET or LIMIT
    limit_price: Decimal | None = None
    stop_loss_pct: Decimal | None = None
    take_profit_pct: Decimal | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "side": self.side.value,
            "qty": str(self.qty),
            "type": self.type.value,
            "limit_price": None if self.limit_price is None else str(self.limit_price),
            "stop_loss_pct": None if self.stop_loss_pct is None else str(self.stop_loss_pct),
            "take_profit_pct": None if self.take_profit_pct is None else str(self.take_profit_pct),
        }


@dataclass(slots=True)
class Proposal:
    id: str
    decision: Decision
    state: MarketState | None
    created_ms: int  # wall clock, for the journal and the card
    shown_at: float  # monotonic: the human decision time and the countdown start here
    expires_at: float  # monotonic
    status: ProposalStatus = ProposalStatus.PENDING
    reviewed_at: float | None = None
    edits: OrderEdits | None = None  # what was sent (after Modify) or what the proposal implied
    reason: str | None = None
    order_id: str | None = None
    held: bool = False  # the trader is editing it: it does not expire meanwhile

    @property
    def action(self) -> Action:
        assert self.decision.body is not None
        return self.decision.body.action

    @property
    def price(self) -> Decimal | None:
        """The price the model saw."""
        return None if self.state is None else Decimal(str(self.state.last_price))

    def remaining_s(self, now: float) -> float:
        return max(0.0, self.expires_at - now)


@dataclass(frozen=True, slots=True)
class AutoApproveLimits:
    """Auto-approve acts only inside these, stricter than the risk limits; it is off unless the trader enables it.
    ``max_order_value`` (quote currency) caps each order it sends: a larger proposal is scaled down to it."""

    min_confidence: float = 0.75
    max_order_value: Decimal = Decimal("1000")


@dataclass(frozen=True, slots=True)
class AutoDecision:
    """What auto-approve makes of a proposal: the order to send (maybe scaled down), or why it left it alone."""

    edits: OrderEdits | None
    reason: str  # why it refused, or how it scaled; "" when sent as proposed


@dataclass(frozen=True, slots=True)
class ApprovalCheck:
    ok: bool
    message: str = ""
    needs_confirmation: bool = False  # the price drifted: ask the trader again


@dataclass(frozen=True, slots=True)
class _Rejection:
    action: Action
    bar_close_ms: int  # the closed bars the rejected proposal was made from (-1: unknown)


@dataclass
class ProposalBook:
    expiry_s: float = 30.0
    max_drift_pct: float = 0.5
    instruments: Instruments = field(default_factory=Instruments)
    auto_approve: bool = False
    auto_limits: AutoApproveLimits = field(default_factory=AutoApproveLimits)
    clock: Callable[[], float] = time.monotonic
    wall_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    proposals: dict[str, Proposal] = field(default_factory=dict)
    version: int = 0
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    # symbol -> the action the trader rejected, until the action changes for good (module docstring)
    _rejected: dict[str, _Rejection] = field(default_factory=dict)
    # Told each proposal superseded on release from a hold (should_propose's are told through its caller).
    on_superseded: Callable[[Proposal], None] | None = None

    def should_propose(self, event: DecisionEvent) -> bool:
        """Whether a history-worthy answer becomes a proposal (module docstring); a pending proposal of another
        action for the symbol is superseded here (marked EXPIRED with the reason; the caller journals it)."""
        symbol, body = event.decision.symbol, event.decision.body
        if body is not None:
            self._forget_rejection(symbol, body.action, event.state.bar_close_ms)
        if body is None or body.action is Action.HOLD or (
                body.action in (Action.BUY, Action.SELL) and body.size_pct <= 0):
            return False
        rejected = self._rejected.get(symbol)
        if rejected is not None and rejected.action is body.action:
            return False  # the trader said no to this idea, and it has not gone away since
        pending = [p for p in self.pending() if p.decision.symbol == symbol]
        if any(p.action is body.action for p in pending):
            return False  # the pending one stands
        if pending:
            for p in pending:
                if not p.held:  # one being edited is the trader's: it stays until sent or released
                    self.mark(p, ProposalStatus.EXPIRED, reason=f"superseded by {body.action.value}")
            return True
        return event.changed or event.fresh

    def _forget_rejection(self, symbol: str, action: Action, bar_close_ms: int) -> None:
        """An answer of ``action`` ends the symbol's rejection when it is another trade, or anything else made from
        a newer closed bar than the rejected proposal's."""
        rejected = self._rejected.get(symbol)
        if rejected is None or action is rejected.action:
            return
        if action is not Action.HOLD or bar_close_ms > rejected.bar_close_ms:
            del self._rejected[symbol]

    def pending_for(self, symbol: str) -> Proposal | None:
        """The symbol's newest pending proposal."""
        for p in reversed(self.proposals.values()):
            if p.status is ProposalStatus.PENDING and p.decision.symbol == symbol:
                return p
        return None

    def hold(self, p: Proposal) -> None:
        """The trader is editing ``p``: it does not expire until released."""
        if p.status is ProposalStatus.PENDING and not p.held:
            p.held = True
            self.version += 1

    def release(self, p: Proposal) -> None:
        """Editing ended: a proposal still pending gets at least RELEASE_GRACE_S more to be acted on, or is
        superseded by a newer pending proposal of another action for its symbol (made while it was held)."""
        if not p.held:
            return
        p.held = False
        if p.status is ProposalStatus.PENDING:
            ids = list(self.proposals)
            newer = ids[ids.index(p.id) + 1:] if p.id in self.proposals else []
            other = [q for q in map(self.proposals.__getitem__, newer) if q.status is ProposalStatus.PENDING
                     and q.decision.symbol == p.decision.symbol and q.action is not p.action]
            if other:
                self.mark(p, ProposalStatus.EXPIRED, reason=f"superseded by {other[-1].action.value}")
                if self.on_superseded is not None:
                    self.on_superseded(p)
            else:
                p.expires_at = max(p.expires_at, self.clock() + RELEASE_GRACE_S)
        self.version += 1

    def add(self, decision: Decision, state: MarketState | None) -> Proposal | None:
        """A decision that asks for an order becomes a pending proposal; HOLD and errors do not."""
        body = decision.body
        if body is None or body.action is Action.HOLD:
            return None
        if body.action in (Action.BUY, Action.SELL) and body.size_pct <= 0:
            return None  # buying or selling 0 % of equity asks for no order: nothing for the trader to approve
        now = self.clock()
        p = Proposal(
            id=f"{self.wall_ms():d}-{next(self._ids)}",
            decision=decision,
            state=state,
            created_ms=self.wall_ms(),
            shown_at=now,
            expires_at=now + self.expiry_s,
        )
        self.proposals[p.id] = p
        self._trim()
        self.version += 1
        return p

    def for_decision(self, decision: Decision) -> Proposal | None:
        """The proposal made from this decision object, if it became one."""
        for p in reversed(self.proposals.values()):
            if p.decision is decision:
                return p
        return None

    def pending(self) -> list[Proposal]:
        return [p for p in self.proposals.values() if p.status is ProposalStatus.PENDING]

    def newest_pending(self) -> Proposal | None:
        pending = self.pending()
        return pending[-1] if pending else None

    def expire_due(self) -> list[Proposal]:
        now = self.clock()
        expired = []
        for p in self.pending():
            if now >= p.expires_at and not p.held:
                p.status = ProposalStatus.EXPIRED
                p.reviewed_at = now
                p.reason = f"no decision within {self.expiry_s:g} s"
                expired.append(p)
        if expired:
            self.version += 1
        return expired

    def check_approvable(self, p: Proposal, current_price: Decimal | None, confirm_drift: bool,
                         edits: OrderEdits | None = None) -> ApprovalCheck:
        """``edits``: the order about to be sent, named in the drift question so the trader knows what he
        confirms."""
        if p.status is not ProposalStatus.PENDING:
            return ApprovalCheck(False, f"proposal is {p.status.value.lower()}, not pending")
        if self.clock() >= p.expires_at and not p.held:
            return ApprovalCheck(False, "proposal expired")
        if current_price is not None and p.price is not None and p.price > 0:
            drift = abs(current_price - p.price) / p.price * 100
            if drift > Decimal(str(self.max_drift_pct)) and not confirm_drift:
                inst = self.instruments.get(p.decision.symbol)
                what = (f"{edits.side.value} {inst.fmt_qty(edits.qty)} {p.decision.symbol}: " if edits is not None
                        else f"{p.action.value} {p.decision.symbol}: ")
                return ApprovalCheck(
                    False,
                    f"{what}price moved {drift:.2f}% since the proposal ({inst.fmt_price(p.price)} -> "
                    f"{inst.fmt_price(current_price)}); the bound is {self.max_drift_pct:g}%: confirm to send anyway",
                    needs_confirmation=True,
                )
        return ApprovalCheck(True)

    def implied_edits(self, p: Proposal, *, equity: Decimal, price: Decimal, position_qty: Decimal) -> OrderEdits:
        """The order a proposal means: size % of equity at the current price, on the lot grid."""
        b = p.decision.body
        assert b is not None
        if b.action is Action.CLOSE:
            side = Side.SELL if position_qty > 0 else Side.BUY
            qty = abs(position_qty)
        else:
            side = Side.BUY if b.action is Action.BUY else Side.SELL
            ref = Decimal(str(b.limit_price)) if b.limit_price else price
            qty = (equity * Decimal(str(b.size_pct)) / 100 / ref) if ref > 0 else Decimal(0)
        inst = self.instruments.get(p.decision.symbol)
        qty = inst.round_qty(qty, ROUND_DOWN)
        limit = None
        if b.limit_price is not None and b.action is not Action.CLOSE:
            limit = inst.round_price(Decimal(str(b.limit_price)))
        return OrderEdits(
            side=side,
            qty=qty,
            type=OrderType.LIMIT if limit is not None else OrderType.MARKET,
            limit_price=limit,
            stop_loss_pct=_pct(b.stop_loss_pct) if b.action is not Action.CLOSE else None,
            take_profit_pct=_pct(b.take_profit_pct) if b.action is not Action.CLOSE else None,
        )

    def to_request(self, p: Proposal, edits: OrderEdits) -> OrderRequest:
        return OrderRequest(
            symbol=p.decision.symbol,
            side=edits.side,
            type=edits.type,
            qty=edits.qty,
            limit_price=edits.limit_price,
            origin=OrderOrigin.MODEL,
            proposal_id=p.id,
            reduce_only=p.action is Action.CLOSE,
            stop_loss_pct=edits.stop_loss_pct,
            take_profit_pct=edits.take_profit_pct,
        )

    def mark(self, p: Proposal, status: ProposalStatus, *, edits: OrderEdits | None = None,
             reason: str | None = None) -> None:
        p.status = status
        p.reviewed_at = self.clock()
        p.edits = edits
        p.reason = reason
        p.held = False
        if status is ProposalStatus.REJECTED and p.decision.body is not None:
            bar = p.state.bar_close_ms if p.state is not None else -1
            self._rejected[p.decision.symbol] = _Rejection(p.action, bar)
        self.version += 1

    def auto_decide(self, p: Proposal, edits: OrderEdits | None, price: Decimal | None) -> AutoDecision:
        """The order auto-approve would send for ``p`` (``edits``: what the proposal implies at ``price``), scaled
        down to ``max_order_value`` when above it; or why it leaves the proposal to the trader."""
        b = p.decision.body
        lim = self.auto_limits
        if not self.auto_approve:
            return AutoDecision(None, "auto-approve is off")
        if b is None or b.action is Action.CLOSE:
            return AutoDecision(None, "closing a position is left to the trader")
        if b.confidence < lim.min_confidence:
            return AutoDecision(None, f"confidence {b.confidence:.2f} is below auto-approve's "
                                      f"{lim.min_confidence:.2f}")
        if edits is None or price is None or price <= 0:
            return AutoDecision(None, f"no price for {p.decision.symbol} yet")
        inst = self.instruments.get(p.decision.symbol)
        ref = edits.limit_price or price
        value = edits.qty * ref
        note = ""
        if value > lim.max_order_value:
            qty = inst.round_qty(lim.max_order_value / ref, ROUND_DOWN)
            note = (f"scaled down from {inst.fmt_qty(edits.qty)} to {inst.fmt_qty(qty)} {inst.base} "
                    f"(auto-approve's cap {inst.fmt_money(lim.max_order_value)} {inst.quote})").replace("  ", " ")
            edits = replace(edits, qty=qty)
        problem = inst.size_problem(edits.qty, ref) if edits.qty > 0 else (
            f"one lot of {p.decision.symbol} is worth more than auto-approve's cap "
            f"{inst.fmt_money(lim.max_order_value)} {inst.quote}")
        if problem is not None:
            return AutoDecision(None, problem)
        return AutoDecision(edits, note)

    def _trim(self, keep: int = 500) -> None:
        if len(self.proposals) > keep:
            for pid in list(self.proposals)[: len(self.proposals) - keep]:
                if self.proposals[pid].status is not ProposalStatus.PENDING:
                    del self.proposals[pid]


def _pct(v: float | None) -> Decimal | None:
    return None if v is None else Decimal(str(v)).quantize(Decimal("0.01"))
