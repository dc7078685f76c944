"""TradingDesk: the one place where proposals, the trader's actions, risk, the broker, the portfolio and the journal
meet. Every order, whatever its origin (approved proposal, modified proposal, order ticket, flatten, kill switch),
goes through ``_send``: put on the instrument's filters (tick, lot), then RiskManager, then the broker. Every step is
journaled before it is acknowledged. The broker is any ``Broker`` (paper or an exchange account): the desk never
feeds it market data (the session does, for the paper broker) and never assumes it can refuse nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.llm.schema import Decision
from app.llm.service import DecisionEvent
from app.market.book import OrderBook
from app.market.features import MarketState, PositionState
from app.market.instruments import Instruments
from app.models import (
    BookUpdate,
    Fill,
    MarketEvent,
    Order,
    OrderOrigin,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Trade,
)
from app.perf.metrics import APPROVE_TO_FILL, HUMAN_DECISION, PROPOSAL_TO_FILL, Metrics
from app.trading.broker import Broker, CancelReport, on_filters
from app.trading.journal import Journal
from app.trading.portfolio import Portfolio
from app.trading.proposals import OrderEdits, Proposal, ProposalBook, ProposalStatus
from app.trading.restore import PENDING_AT_QUIT, PENDING_AT_RESTART, Restored, summary
from app.trading.risk import RiskManager, RiskState

log = logging.getLogger(__name__)

BALANCE_EVERY_S = 60.0

# Runs a one-off task and owns its lifetime: the session passes its supervisor's spawn (a task that raises is a FAULT,
# every task is cancelled at stop); tests may leave the default, a plain loop task.
Spawner = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


def _loop_task(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro, name=name)


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    message: str
    needs_confirmation: bool = False
    order_id: str | None = None


class TradingDesk:
    def __init__(
        self,
        *,
        broker: Broker,
        risk: RiskManager,
        portfolio: Portfolio,
        journal: Journal,
        proposals: ProposalBook,
        symbols: Iterable[str],
        on_position_change: Callable[[str, PositionState], None] | None = None,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        metrics: Metrics | None = None,
        spawn: Spawner = _loop_task,
        why_not_live: Callable[[str], str | None] | None = None,
    ) -> None:
        """``why_not_live(symbol)``: None while the symbol's market data is live, else the feed's state; a proposal
        is not approved meanwhile (its price and the drift check would both be the stale last price)."""
        self.metrics = metrics or Metrics()
        self._why_not_live = why_not_live or (lambda _symbol: None)
        self._sent_at: dict[str, tuple[float, float | None]] = {}  # order id -> (approved at, proposal shown at)
        self.broker = broker
        self.risk = risk
        self.portfolio = portfolio
        self.journal = journal
        self.proposals = proposals
        proposals.on_superseded = self._journal_superseded  # a held proposal released after a newer one came
        self.books = {s: OrderBook(s) for s in symbols}
        self.last_prices: dict[str, Decimal] = {}
        self.messages: deque[tuple[int, str, str]] = deque(maxlen=200)  # (ms, level, text) shown to the trader
        self.fills: list[Fill] = []  # the latest fills, newest last, earlier sessions' too (the journal keeps all)
        # This run's own counts (the smoke test's), apart from what a restart took back from the journal.
        self.orders_sent = 0  # orders the desk sent to the broker (bracket legs the broker places not included)
        self.fills_this_run = 0
        self.orders_restored = 0  # open orders that resumed at restart
        self.fills_restored = 0  # fills replayed from the journal at restart
        self.version = 0
        self._on_position_change = on_position_change
        self._wall_ms = wall_ms
        self._last_balance = 0.0
        self.auto_approved = 0  # proposals auto-approve sent (and the broker took)
        self.auto_refused = 0  # proposals it left to the trader (its own limits, drift, risk or broker refusals)
        self._spawn = spawn
        self._auto_tasks: set[asyncio.Task[Any]] = set()  # referenced until done; cancelled at close
        broker.add_listener(self._on_order, self._on_fill)
        # Every change of risk state is journaled here, whatever caused it (an order check, the clock, kill,
        # resume, restore), so a restart takes back the state the terminal was really in.
        risk.add_listener(self._on_risk_state)

    # ----- restart and quit ---------------------------------------------------------------------------------
    def resume_from(self, restored: Restored) -> str:
        """Carry on from a restart (``app.trading.restore``), with the journal listening: orders that cannot resume
        end CANCELED with their reason, proposals left pending end EXPIRED, the rest works again, and the risk
        state (kill switch included) is the one the terminal stopped in. Returns what the log should say."""
        now_ms = self._wall_ms()
        for order in restored.canceled_orders:
            self.journal.record_order(order)
        self.journal.expire_pending(now_ms, PENDING_AT_RESTART)
        for pos in self.portfolio.positions:
            self.broker.set_position(pos.symbol, pos.qty)  # restored bracket legs must see what they protect
        # Before the broker starts: no id the journal used is numbered again, no journaled fill counted again (a
        # live broker's reconciliation meets the exchange's trades the journal already holds).
        self.broker.restore_ids(order_ids=restored.order_ids, fill_ids=restored.fill_ids)
        self.broker.restore_open_orders(restored.resumed_orders)
        self.orders_restored, self.fills_restored = len(restored.resumed_orders), restored.fills_replayed
        if restored.risk_state is not RiskState.ACTIVE:  # the risk listener journals it and tells the trader
            self.risk.restore(restored.risk_state, restored.risk_reason,
                              day_pnl=self.portfolio.day_pnl(now_ms) if restored.day_carried else None)
        open_now = len(self.broker.open_orders())
        text = (f"journal restored: {restored.fills_replayed} fills, {open_now} open orders, "
                f"cash {self.portfolio.cash}, risk {self.risk.state.value}")
        if restored.notes:
            text += f" ({'; '.join(restored.notes)})"
        self.version += 1
        return text

    def close(self) -> None:
        """The terminal is closing: auto-approvals still running are cancelled (the journal closes next), proposals
        nobody reviewed expire, in memory and in the journal."""
        for task in self._auto_tasks:
            task.cancel()
        for p in self.proposals.pending():
            self.proposals.mark(p, ProposalStatus.EXPIRED, reason=PENDING_AT_QUIT)
        self.journal.expire_pending(self._wall_ms(), PENDING_AT_QUIT)
        self.version += 1

    def summary(self) -> dict[str, object]:
        """Positions, cash, open orders and risk state as JSON values (``app.trading.restore.summary``)."""
        return summary(self.portfolio, self.broker.open_orders(), self.risk.state)

    # ----- inputs -------------------------------------------------------------------------------------------
    def on_decision_event(self, event: DecisionEvent) -> Proposal | None:
        """The decision service's listener: a proposal only when ``ProposalBook.should_propose`` says the answer
        is news (a changed action, or a fresh answer), never for a cache confirmation; a pending proposal it
        supersedes is journaled EXPIRED with the reason."""
        symbol = event.decision.symbol
        before = [p for p in self.proposals.pending() if p.decision.symbol == symbol]
        propose = self.proposals.should_propose(event)
        for p in before:
            if p.status is ProposalStatus.EXPIRED:
                self._journal_superseded(p)
        return self.on_decision(event.decision, event.state) if propose else None

    def _journal_superseded(self, p: Proposal) -> None:
        self.journal.record_review(p.id, "EXPIRED", self._wall_ms(), reason=p.reason)
        self._say("info", f"proposal {p.action.value} {p.decision.symbol} {p.reason}")

    def on_decision(self, decision: Decision, state: MarketState | None) -> Proposal | None:
        """Make ``decision`` a pending proposal if it asks for an order (journaled; auto-approve, when on, acts on
        it). The service's answers come through ``on_decision_event``, which decides whether they are news."""
        p = self.proposals.add(decision, state)
        if p is None:
            return None
        expires_ms = p.created_ms + int(self.proposals.expiry_s * 1000)
        self.journal.record_proposal(p.id, decision, state, p.created_ms, expires_ms)
        self.version += 1
        if self.proposals.auto_approve:
            task = self._spawn(self._auto_approve(p), f"auto-approve {p.id}")
            self._auto_tasks.add(task)
            task.add_done_callback(self._auto_tasks.discard)
        return p

    async def _auto_approve(self, p: Proposal) -> None:
        symbol = p.decision.symbol
        auto = self.proposals.auto_decide(p, self.implied_edits(p), self.last_price(symbol))
        if auto.edits is None:  # outside auto-approve's own limits: the trader decides, and is told why
            self.auto_refused += 1
            self._say("info", f"auto-approve left {p.action.value} {symbol} to the trader: {auto.reason}")
            return
        result = await self._execute(p, auto.edits, ProposalStatus.APPROVED, confirm_drift=False,
                                     kind="AUTO_APPROVED")
        if result.ok:
            self.auto_approved += 1
        else:  # drift, a risk veto, the broker: still the trader's to decide
            self.auto_refused += 1
        scaled = f" ({auto.reason})" if auto.reason else ""
        self._say("info" if result.ok else "warn", f"auto-approve {p.action.value} {symbol}: {result.message}{scaled}")


    def on_market(self, batch: list[MarketEvent]) -> None:
        for ev in batch:
            if isinstance(ev, Trade):
                price = Decimal(str(ev.price))
                if ev.symbol not in self.last_prices:  # a symbol without exchange filters: defaults from its price
                    self.instruments.observe_price(ev.symbol, price)
                self.last_prices[ev.symbol] = price
                self.portfolio.mark(ev.symbol, price)
            elif isinstance(ev, BookUpdate):
                book = self.books.get(ev.symbol)
                if book is not None:
                    book.apply(ev)  # a paper broker walks these very books (the session shares them)

    def tick(self) -> None:
        """Called about once a second: expire proposals, keep the equity curve and balances current."""
        for p in self.proposals.expire_due():
            self.journal.record_review(p.id, "EXPIRED", self._wall_ms(), reason=p.reason)
            self._say("info", f"proposal {p.action.value} {p.decision.symbol} expired")
        now_ms = self._wall_ms()
        self.portfolio.sample(now_ms)
        self.risk.observe_day_pnl(self.portfolio.day_pnl(now_ms))  # a change is journaled by _on_risk_state
        if time.monotonic() - self._last_balance >= BALANCE_EVERY_S:
            self._record_balance(now_ms)

    def now_ms(self) -> int:
        return self._wall_ms()

    def bracket_levels(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        """Working stop-loss and take-profit prices of the position's bracket, for the chart."""
        sl = tp = None
        for o in self.broker.open_orders(symbol):
            if o.request.origin is OrderOrigin.BRACKET:
                if o.request.type is OrderType.STOP_MARKET:
                    sl = o.request.stop_price
                elif o.request.type is OrderType.LIMIT:
                    tp = o.request.limit_price
        return sl, tp

    # ----- the trader's actions -----------------------------------------------------------------------------
    def last_price(self, symbol: str) -> Decimal | None:
        return self.last_prices.get(symbol)

    @property
    def instruments(self) -> Instruments:
        """Each symbol's tick, lot, minimums and display precision: the proposal book's (shared with risk and the
        broker by the session)."""
        return self.proposals.instruments

    def say_instrument_problems(self) -> None:
        """Tell the trader which symbols trade on safe defaults because their filters could not be loaded."""
        for text in self.instruments.problems.values():
            self._say("warn", text)


    def implied_edits(self, p: Proposal) -> OrderEdits | None:
        price = self.last_price(p.decision.symbol) or p.price
        if price is None:
            return None
        pos = self.portfolio.position(p.decision.symbol)
        return self.proposals.implied_edits(p, equity=self.portfolio.equity(), price=price, position_qty=pos.qty)

    async def approve(self, proposal_id: str, *, confirm_drift: bool = False) -> ActionResult:
        p = self.proposals.proposals.get(proposal_id)
        if p is None:
            return self._refuse(f"no proposal {proposal_id}")
        edits = self.implied_edits(p)
        if edits is None:
            return self._refuse("no market price yet")
        return await self._execute(p, edits, ProposalStatus.APPROVED, confirm_drift)

    async def modify(self, proposal_id: str, edits: OrderEdits, *, confirm_drift: bool = False) -> ActionResult:
        p = self.proposals.proposals.get(proposal_id)
        if p is None:
            return self._refuse(f"no proposal {proposal_id}")
        return await self._execute(p, edits, ProposalStatus.MODIFIED, confirm_drift)

    def reject(self, proposal_id: str, reason: str = "rejected by the trader") -> ActionResult:
        p = self.proposals.proposals.get(proposal_id)
        if p is None or p.status is not ProposalStatus.PENDING:
            return self._refuse("only a pending proposal can be rejected")
        self.proposals.mark(p, ProposalStatus.REJECTED, reason=reason)
        self.journal.record_review(p.id, "REJECTED", self._wall_ms(), reason=reason,
                                   decision_time_ms=self._decision_time_ms(p))
        self.version += 1
        return ActionResult(True, f"rejected {p.action.value} {p.decision.symbol}")

    async def submit_manual(self, req: OrderRequest) -> ActionResult:
        return await self._send(req)

    async def cancel(self, order_id: str) -> ActionResult:
        if await self.broker.cancel(order_id):
            return ActionResult(True, f"cancel sent for {order_id}")
        return self._refuse(f"order {order_id} is not open")

    async def flatten(self, symbol: str) -> ActionResult:
        result, _report = await self._flatten(symbol)
        return result

    async def _flatten(self, symbol: str) -> tuple[ActionResult, CancelReport]:
        """Cancel the symbol's working orders (so the closing order counts as reducing), then close the position at
        market. What the exchange would not cancel is said with the result."""
        pos = self.portfolio.position(symbol)
        if pos.qty == 0:
            return self._refuse(f"no {symbol} position to flatten"), CancelReport(0)
        report = await self.broker.cancel_all(symbol)
        side = Side.SELL if pos.qty > 0 else Side.BUY
        req = OrderRequest(symbol, side, OrderType.MARKET, abs(pos.qty), origin=OrderOrigin.FLATTEN, reduce_only=True)
        result = await self._send(req)
        if report.refused:
            text = f"{result.message}; not canceled: {'; '.join(report.refused)}"
            self._say("warn", f"flatten {symbol}: the exchange would not cancel {'; '.join(report.refused)}")
            result = ActionResult(result.ok, text, result.needs_confirmation, result.order_id)
        return result, report

    async def kill_switch(self) -> ActionResult:
        """Halt first (nothing new passes), then cancel every open order at the broker (the exchange, when live) and
        flatten every position; the result names anything the exchange refused."""
        # KILL first: the HALTED state event that risk.kill() journals (through _on_risk_state) is the last word.
        self.journal.record_risk_event(self._wall_ms(), "KILL", "kill_switch", "kill switch: cancel all, flatten, halt")
        self.risk.kill()
        report = await self.broker.cancel_all()
        refused = list(report.refused)
        canceled = report.canceled
        results = []
        for s in self.books:
            if self.portfolio.position(s).qty != 0:
                result, again = await self._flatten(s)
                results.append(result)
                canceled += again.canceled
                refused += [r for r in again.refused if r not in refused]
        failed = [r.message for r in results if not r.ok]
        msg = f"KILL SWITCH: halted, {canceled} orders canceled, {len(results)} positions flattened"
        if refused:
            msg += f"; the exchange refused to cancel {len(refused)}: {'; '.join(refused)}"
        if failed:
            msg += f" (failed: {'; '.join(failed)})"
        self._say("error", msg)
        self.version += 1
        return ActionResult(not failed and not refused, msg)

    def resume(self) -> ActionResult:
        # RESUME first: the state it ends in (ACTIVE, or REDUCING while the loss limit holds) is journaled after it.
        self.journal.record_risk_event(self._wall_ms(), "RESUME", "resume", "trading resumed by the trader")
        self.risk.resume(self.portfolio.day_pnl(self._wall_ms()))
        self._say("info", f"trading resumed ({self.risk.state.value})")
        self.version += 1
        return ActionResult(True, f"risk state {self.risk.state.value}")

    # ----- internals ----------------------------------------------------------------------------------------
    async def _execute(self, p: Proposal, edits: OrderEdits, status: ProposalStatus,
                       confirm_drift: bool, kind: str | None = None) -> ActionResult:
        symbol = p.decision.symbol
        if (why := self._why_not_live(symbol)) is not None:
            # The drift check would compare the model's price with a last price that stopped moving: nothing
            # would stop an order made for a market that has gone elsewhere. The proposal stays pending.
            return self._refuse(f"{p.action.value} {symbol} not sent: no live market data ({why}); the price "
                                f"cannot be checked until the feed is back")
        check = self.proposals.check_approvable(p, self.last_price(symbol), confirm_drift, edits)
        if not check.ok:
            return self._refuse(check.message, needs_confirmation=check.needs_confirmation)
        req = self._on_filters(self.proposals.to_request(p, edits))
        veto = self._veto(req)
        if veto is not None:
            return veto
        original = self.implied_edits(p)
        self.proposals.mark(p, status, edits=edits)
        self.journal.record_review(
            p.id,
            kind or status.value,
            self._wall_ms(),
            original=original.as_dict() if original else None,
            # What was sent when it is not what the proposal implied (a modify, or auto-approve's scaling down).
            edited=edits.as_dict() if status is ProposalStatus.MODIFIED or edits != original else None,
            decision_time_ms=self._decision_time_ms(p),
        )
        approved_at = time.perf_counter()
        result = await self._submit(req)
        p.order_id = result.order_id
        if result.order_id is not None:
            # The proposal's shown_at is on the proposal book's clock; convert its age to perf_counter time.
            shown_at = approved_at - (self.proposals.clock() - p.shown_at)
            self._sent_at[result.order_id] = (approved_at, shown_at)
        return result

    async def _send(self, req: OrderRequest) -> ActionResult:
        req = self._on_filters(req)
        veto = self._veto(req)
        if veto is not None:
            return veto
        return await self._submit(req)

    def _on_filters(self, req: OrderRequest) -> OrderRequest:
        """The order as the exchange takes it, before risk judges it: quantity down to the lot, prices to the tick
        (``broker.on_filters``), for the model and the trader alike, so risk sees what will really be sent. A
        quantity that rounding would take below the instrument's minimum (or to nothing) is left as asked: risk
        then refuses it in words that name what was asked, never "quantity 0". Closing orders keep their rounded
        quantity whatever the minimum (closing is never refused for size)."""
        inst = self.instruments.get(req.symbol)
        fitted = on_filters(req, inst)
        closing = req.reduce_only or req.origin is OrderOrigin.FLATTEN
        if fitted.qty != req.qty and (fitted.qty <= 0 or (fitted.qty < inst.min_qty and not closing)):
            fitted = dataclasses.replace(fitted, qty=req.qty)
        return fitted

    def _veto(self, req: OrderRequest) -> ActionResult | None:
        veto = self.risk.check(
            req,
            last_price=self.last_price(req.symbol),
            position=self.portfolio.position(req.symbol),
            open_orders=self.broker.open_orders(req.symbol),
            day_pnl=self.portfolio.day_pnl(self._wall_ms()),
        )
        if veto is None:
            return None
        self.journal.record_risk_event(self._wall_ms(), "VETO", veto.code, veto.message, _request_dict(req))
        return self._refuse(f"risk: {veto.message}")

    async def _submit(self, req: OrderRequest) -> ActionResult:
        order = await self.broker.submit(req)
        self.orders_sent += 1
        self.version += 1
        if order.status is OrderStatus.REJECTED:
            return self._refuse(f"broker rejected the order: {order.reject_reason}")
        inst = self.instruments.get(req.symbol)
        qty = inst.fmt_qty(order.request.qty)  # as the broker took it, on the lot grid
        price = f" @ {inst.fmt_price(order.request.limit_price)}" if order.request.limit_price is not None else ""
        what = f"{req.side.value} {qty} {req.symbol} {req.type.value.lower()}{price}"
        self._say("info", f"sent {what}")
        # What the trader reads under the ticket or the card: the order in words, where it went, then its id.
        return ActionResult(True, f"{self.broker.mode} {what} sent · order {order.id}", order_id=order.id)

    def _on_order(self, order: Order) -> None:
        self.journal.record_order(order)
        self.version += 1

    def _on_fill(self, fill: Fill) -> None:
        sent = self._sent_at.pop(fill.order_id, None)
        if sent is not None:  # the first fill of an approved proposal's order
            now = time.perf_counter()
            self.metrics.recorder(APPROVE_TO_FILL).record(int((now - sent[0]) * 1e9))
            if sent[1] is not None:
                self.metrics.recorder(PROPOSAL_TO_FILL).record(int((now - sent[1]) * 1e9))
        before = self._position_state(fill.symbol)
        self.portfolio.apply_fill(fill)
        self.journal.record_fill(fill)
        self.fills.append(fill)
        del self.fills[:-1000]
        self.fills_this_run += 1
        self._record_balance(self._wall_ms())
        after = self._position_state(fill.symbol)
        if after is not before and self._on_position_change is not None:
            self._on_position_change(fill.symbol, after)
        inst = self.instruments.get(fill.symbol)
        self._say("info", f"filled {fill.side.value} {inst.fmt_qty(fill.qty)} {fill.symbol} "
                          f"@ {inst.fmt_price(fill.price)}")
        self.version += 1

    def position_state(self, symbol: str) -> tuple[PositionState, int]:
        """For the decision service: the position and the sign of its unrealised PnL."""
        state = self._position_state(symbol)
        pnl = self.portfolio.unrealized_pnl(symbol)
        return state, (pnl > 0) - (pnl < 0)

    def _position_state(self, symbol: str) -> PositionState:
        q = self.portfolio.position(symbol).qty
        return PositionState.LONG if q > 0 else PositionState.SHORT if q < 0 else PositionState.FLAT

    def _record_balance(self, now_ms: int) -> None:
        self._last_balance = time.monotonic()
        pf = self.portfolio
        positions = {s: (p.qty, p.avg_price) for s in self.books if (p := pf.position(s)).qty != 0}
        marks = {s: m for s in positions if (m := pf.mark_price(s)) is not None}
        self.journal.record_balance(now_ms, pf.cash, pf.equity(), positions, day_start_ms=pf.day_start_ms,
                                    day_start_equity=pf.day_start_equity, marks=marks)

    def _decision_time_ms(self, p: Proposal) -> float:
        ms = (self.proposals.clock() - p.shown_at) * 1000.0
        self.metrics.recorder(HUMAN_DECISION).record(int(ms * 1e6))
        return ms

    def _refuse(self, message: str, *, needs_confirmation: bool = False) -> ActionResult:
        self._say("warn", message)
        return ActionResult(False, message, needs_confirmation=needs_confirmation)

    def _on_risk_state(self, state: RiskState, why: str) -> None:
        self.journal.record_risk_event(self._wall_ms(), "STATE", state.value, why)
        if state is not RiskState.ACTIVE:
            self._say("warn", f"risk state {state.value}: {why}")
        self.version += 1

    def say(self, level: str, text: str) -> None:
        """A message for the trader from another part of the terminal (shown with the desk's own)."""
        self._say(level, text)

    def _say(self, level: str, text: str) -> None:
        self.messages.append((self._wall_ms(), level, text))
        getattr(log, "warning" if level == "warn" else level)(text)
        self.version += 1


def _request_dict(req: OrderRequest) -> dict[str, str | None]:
    return {
        "symbol": req.symbol,
        "side": req.side.value,
        "type": req.type.value,
        "qty": str(req.qty),
        "limit_price": None if req.limit_price is None else str(req.limit_price),
        "origin": req.origin.value,
    }
