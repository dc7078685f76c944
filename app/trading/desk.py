"""TradingDesk: the one place where proposals, the trader's actions, risk, the broker, the portfolio and the journal
meet. Every order, whatever its origin (approved proposal, modified proposal, order ticket, flatten, kill switch),
goes through ``_send``: put on the instrument's filters (tick, lot), then RiskManager, then the broker. Every step is
journaled before it is acknowledged. The broker is any ``Broker`` (paper or an exchange account): the desk never
feeds it market data (the session does, for the paper broker) and never assumes it can refuse nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
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
from app.trading.broker import Broker, CancelReport, LegMove, on_filters
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
        # Order commands on a symbol (replace, move the bracket, cancel, cancel all, flatten, the kill switch) run one
        # at a time: one never acts on what another is halfway through changing (``_serial``).
        self._locks: dict[str, asyncio.Lock] = {}
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
        if req.type is OrderType.STOP_MARKET:  # a stop entry must wait for the market, not trigger on arrival
            problem = self._stop_entry_problem(self._on_filters(req))
            if problem is not None:
                return self._refuse(problem)
        return await self._send(req)

    # ----- the screen's commands (the ticket, the blotter, the chart, hotkeys) --------------------------------
    async def replace_order(self, order_id: str, *, price: Decimal | None = None, qty: Decimal | None = None,
                            stop_price: Decimal | None = None) -> ActionResult:
        """Modify a working limit or stop order: its price and/or quantity. Done as cancel + new (paper and live
        alike: the journal keeps each order's request as sent), through the same filters and risk checks as a new
        order, judged without the order it replaces, and judged again once the cancel is done (a kill switch pressed
        meanwhile stops the replacement). ``qty`` is the new order's quantity; None (the ticket, unless the trader
        edited it): what the old order has left once canceled, so a fill that lands during the cancel is never
        bought again (of a ``qty`` given, what filled during the cancel is taken off). A bracket leg is moved
        alone (``move_bracket``'s way; its quantity follows the position)."""
        old = self.broker.get(order_id)
        if old is None or not old.status.is_open:
            return self._refuse(f"order {order_id} is not working: nothing to replace")
        async with self._serial([old.symbol]):
            return await self._replace_order(old, price=price, qty=qty, stop_price=stop_price)

    async def _replace_order(self, old: Order, *, price: Decimal | None, qty: Decimal | None,
                             stop_price: Decimal | None) -> ActionResult:
        order_id = old.id
        if not old.status.is_open:  # it ended while another command on the symbol ran
            return self._refuse(f"order {order_id} is not working: nothing to replace")
        r, inst = old.request, self.instruments.get(old.symbol)
        if r.type is OrderType.MARKET:
            return self._refuse(f"order {order_id} is a market order: only a limit or stop order can be replaced")
        if r.origin is OrderOrigin.BRACKET:
            if qty is not None and qty != old.remaining:
                return self._refuse(f"order {order_id} is a bracket leg: its quantity follows the position; "
                                    "move its price instead")
            if r.type is OrderType.STOP_MARKET:
                return await self._move_bracket(old.symbol, stop_loss=stop_price or price, only=order_id)
            return await self._move_bracket(old.symbol, take_profit=price, only=order_id)
        changes: dict[str, Any] = {"qty": old.remaining if qty is None else qty}
        if r.type is OrderType.LIMIT and price is not None:
            changes["limit_price"] = price
        if r.type is OrderType.STOP_MARKET and (stop_price or price) is not None:
            changes["stop_price"] = stop_price or price
        req = self._on_filters(dataclasses.replace(r, **changes))
        if (req.qty, req.limit_price, req.stop_price) == (old.remaining, r.limit_price, r.stop_price):
            return self._refuse(f"order {order_id} already is {self._describe(req, inst)}: nothing to change")
        if req.type is OrderType.STOP_MARKET and (problem := self._stop_entry_problem(req)) is not None:
            return self._refuse(problem)
        veto = self._veto(req, without=order_id)
        if veto is not None:
            return veto
        filled_before = old.filled_qty
        if not await self.broker.cancel(order_id):
            if old.status is OrderStatus.FILLED:
                return self._refuse(f"order {order_id} filled meanwhile ({inst.fmt_qty(old.filled_qty)} "
                                    f"{old.symbol}): nothing left to replace")
            return self._refuse(f"order {order_id} was not replaced: it could not be canceled (filled or ended "
                                "meanwhile)")
        # What filled while the cancel was on its way (the cancel's answer, the user stream) is not bought again.
        during = old.filled_qty - filled_before
        left = old.remaining if qty is None else qty - during
        if left != req.qty:
            req = self._on_filters(dataclasses.replace(req, qty=max(left, Decimal(0))))
        if req.qty <= 0:
            return self._refuse(f"order {order_id} was canceled after {inst.fmt_qty(old.filled_qty)} of "
                                f"{inst.fmt_qty(r.qty)} {old.symbol} filled: nothing left to replace")
        veto = self._veto(req)  # again: the kill switch, or the market, may have changed during the cancel
        if veto is not None:
            return self._refuse(f"order {order_id} was canceled; its replacement was not sent: {veto.message}")
        result = await self._submit(req)
        if not result.ok:
            return self._refuse(f"order {order_id} was canceled, but its replacement was refused: {result.message}")
        # The canceled order names its replacement (the blotter shows REPLACED, the journal keeps the link).
        old.reject_reason = f"replaced by {result.order_id}"
        self.journal.record_order(old)
        self.version += 1
        note = (f" ({inst.fmt_qty(during)} filled during the cancel: not bought again)" if during > 0 else "")
        log.info("order %s replaced by %s: %s", order_id, result.order_id, self._describe(req, inst))
        return ActionResult(True, f"{self.broker.mode} {self._describe(req, inst)} replaces order {order_id}{note} · "
                                  f"order {result.order_id}", order_id=result.order_id)

    async def move_bracket(self, symbol: str, *, stop_loss: Decimal | None = None,
                           take_profit: Decimal | None = None) -> ActionResult:
        """Move the position's stop-loss and/or take-profit to absolute prices (on the tick); one not working yet is
        placed (reduce-only, for the position, linked to the other leg when there is one). A stop-loss on
        the wrong side of the market (it would trigger at once), or a take-profit already reached, is refused in
        words; the moved leg goes through the risk checks as a new order. Paper: the leg is replaced and stays linked
        to its sibling (OCO); live: the stop is canceled at the exchange and placed again at the new price (a
        refused new stop is put back at the old price), the take-profit the terminal holds is replaced here. What
        happened is said as it is: moved, not moved (the old leg kept or put back), the old stop filled meanwhile, or
        NO STOP (the old one canceled and not put back: an error, the position unprotected)."""
        async with self._serial([symbol]):
            return await self._move_bracket(symbol, stop_loss=stop_loss, take_profit=take_profit)

    async def _move_bracket(self, symbol: str, *, stop_loss: Decimal | None = None,
                            take_profit: Decimal | None = None, only: str | None = None) -> ActionResult:
        """``move_bracket`` under the symbol's lock; ``only``: move that leg alone (a blotter or chart replace of
        one order), not every stop-loss (or take-profit) of the symbol."""
        if stop_loss is None and take_profit is None:
            return self._refuse("give a stop-loss or a take-profit price to move to")
        inst = self.instruments.get(symbol)
        pos = self.portfolio.position(symbol)
        if pos.qty == 0:
            return self._refuse(f"no {symbol} position: no stop-loss or take-profit to move")
        last = self.last_price(symbol)
        if last is None:
            return self._refuse(f"no market price for {symbol} yet: the bracket cannot be checked")
        long = pos.qty > 0
        what = "long" if long else "short"
        legs = [o for o in self.broker.open_orders(symbol) if o.request.origin is OrderOrigin.BRACKET]
        plan: list[tuple[Order | None, OrderRequest, str]] = []  # (the leg moved, or the one added beside)
        for name, price, kind in (("stop-loss", stop_loss, OrderType.STOP_MARKET),
                                  ("take-profit", take_profit, OrderType.LIMIT)):
            if price is None:
                continue
            if not price > 0:
                return self._refuse(f"{name} price {inst.fmt_price(price)} must be greater than zero")
            px = inst.round_price(price)
            mine = [o for o in legs if o.request.type is kind and (only is None or o.id == only)]
            if only is not None and not mine:
                return self._refuse(f"order {only} is not a working {name} of {symbol}: nothing to move")
            below = name == "stop-loss" if long else name == "take-profit"
            if (px >= last) if below else (px <= last):
                side = "below" if below else "above"
                act = "sell" if long else "buy back"
                return self._refuse(
                    f"{name} {inst.fmt_price(px)} for the {what} {symbol} position is not {side} the market "
                    f"{inst.fmt_price(last)}: it would {act} at once; a {name} on a {what} sits {side} the market")
            field = "stop_price" if kind is OrderType.STOP_MARKET else "limit_price"
            if mine:
                plan += [(o, dataclasses.replace(o.request, qty=o.remaining, **{field: px}), name) for o in mine]
                continue
            # None working: one is placed, linked to the other leg when there is one (OCO), else for the position.
            others = [o for o in legs if o.request.type is not kind] or [None]
            for sib in others:
                qty = sib.remaining if sib is not None else inst.round_qty(abs(pos.qty))
                parent = sib.request.parent_id if sib is not None else None
                req = OrderRequest(symbol, Side.SELL if long else Side.BUY, kind, qty, origin=OrderOrigin.BRACKET,
                                   reduce_only=True, parent_id=parent or f"{symbol}:position", **{field: px})
                plan.append((sib, req, name))
        for old, req, _name in plan:
            # Judged as the leg it stands for: without the leg it replaces and that leg's OCO sibling, or beside the
            # leg it is added to (at most one of a pair fills).
            pid = old.request.parent_id if old is not None else None
            pair = {o.id for o in legs if old is not None and (o.id == old.id or (pid is not None
                                                                                  and o.request.parent_id == pid))}
            veto = self._veto(req, without=pair)
            if veto is not None:
                return veto
        said: list[str] = []
        ok, level = True, "info"
        for old, req, name in plan:
            px = req.stop_price if req.type is OrderType.STOP_MARKET else req.limit_price
            adding = old is None or old.request.type is not req.type
            self.version += 1
            if adding:
                new = await self.broker.add_leg(req, old.id if old is not None else None)
                if new is None or not (new.status.is_open or new.status is OrderStatus.FILLED):
                    ok = False
                    why = (new.reject_reason if new is not None else None) or "nothing left to protect"
                    said.append(f"{name} not placed ({why})")
                    continue
                said.append(f"{name} placed at {inst.fmt_price(px)} ({req.side.value} "
                            f"{inst.fmt_qty(new.request.qty)} {symbol}) · order {new.id}")
                continue
            assert old is not None
            was = old.request.stop_price if req.type is OrderType.STOP_MARKET else old.request.limit_price
            move = await self.broker.replace_leg(old.id, req)
            text, good, bad = self._say_move(move, name, was, px, symbol, inst)
            said.append(text)
            ok = ok and good
            if bad:
                level = "error"
            elif not good and level == "info":
                level = "warn"
        text = f"{self.broker.mode} {symbol} {what}: " + "; ".join(said)
        if level == "error":
            log.error("%s", text)
        self._say(level, text)
        return ActionResult(ok, text)

    @staticmethod
    def _say_move(move: LegMove, name: str, was: Decimal | None, px: Decimal | None, symbol: str,
                  inst: Any) -> tuple[str, bool, bool]:
        """A leg's move in words, whether it moved, and whether the position is left without its stop."""
        why = f" ({move.why})" if move.why else ""
        if move.closed_at_market:
            return (f"{name} not moved: the market is already through {inst.fmt_price(px)}, so the position was "
                    f"closed at market{why}"), False, False
        if move.moved and move.new is not None:
            new = move.new
            return (f"{name} {inst.fmt_price(was)} -> {inst.fmt_price(px)} ({new.request.side.value} "
                    f"{inst.fmt_qty(new.request.qty)} {symbol}) · order {new.id}"), True, False
        if move.filled:
            return (f"{name} not moved: the {name} at {inst.fmt_price(was)} filled meanwhile (the position it "
                    f"protected is closed){why}"), False, False
        if move.unprotected:
            return (f"{name} NOT moved{why}, and the old {name} at {inst.fmt_price(was)} could not be put back: "
                    f"NO STOP, the {symbol} position is unprotected; place a stop-loss or flatten"), False, True
        if move.kept is not None and move.new is None:
            return f"{name} not moved{why}; it stays at {inst.fmt_price(was)}", False, False
        if move.kept is not None:
            return (f"{name} not moved{why}; put back at {inst.fmt_price(was)} · order {move.kept.id}"), False, False
        return f"{name} not moved{why or ' (no position left to protect)'}", False, False

    async def cancel_all(self, symbols: Iterable[str] | None = None) -> ActionResult:
        """Cancel every working order (of ``symbols``, or every symbol): no flatten, no halt. The stop-loss and
        take-profit of an open position are kept (canceling them would leave the position unprotected; the kill
        switch flattens instead). What the exchange would not cancel is said."""
        targets = None if symbols is None else {str(s) for s in symbols}
        async with self._serial(self._all_symbols() if targets is None else targets):
            canceled, kept, refused = 0, 0, []
            for o in list(self.broker.open_orders()):
                if (targets is not None and o.symbol not in targets) or not o.status.is_open:
                    continue  # canceling one may end another (OCO)
                if self._protects_position(o):
                    kept += 1
                    continue
                if await self.broker.cancel(o.id):
                    canceled += 1
                elif o.status.is_open:
                    refused.append(f"{o.id} ({self._describe(o.request, self.instruments.get(o.symbol))})")
        where = "every symbol" if targets is None else ", ".join(str(s) for s in symbols or ())
        text = f"{self.broker.mode} cancel all ({where}): {canceled} order{'' if canceled == 1 else 's'} canceled"
        if kept:
            text += "; stops and targets of open positions kept"
        if refused:
            text += f"; the exchange refused to cancel {len(refused)}: {'; '.join(refused)}"
        self._say("info" if not refused else "warn", text)
        self.version += 1
        return ActionResult(not refused, text)

    def _protects_position(self, order: Order) -> bool:
        """A stop-loss or take-profit leg of a position still open."""
        return (order.request.origin is OrderOrigin.BRACKET
                and self.portfolio.position(order.symbol).qty != 0)

    def _all_symbols(self) -> set[str]:
        return set(self.books) | {o.symbol for o in self.broker.open_orders()} | {
            p.symbol for p in self.portfolio.positions if p.qty != 0}

    @contextlib.asynccontextmanager
    async def _serial(self, symbols: Iterable[str]) -> AsyncIterator[None]:
        """Hold the order-command lock of each symbol (taken in name order, so two commands never deadlock). Not
        re-entrant: a command calls the others' unlocked halves (``_flatten``, ``_move_bracket``)."""
        async with contextlib.AsyncExitStack() as stack:
            for s in sorted(set(symbols)):
                await stack.enter_async_context(self._locks.setdefault(s, asyncio.Lock()))
            yield

    async def flatten_all(self) -> ActionResult:
        """Close every position at market (each symbol's working orders canceled first), without halting."""
        results = []
        async with self._serial(self._all_symbols()):
            for s in self.books:
                if self.portfolio.position(s).qty != 0:
                    result, _report = await self._flatten(s)
                    results.append(result)
        if not results:
            return self._refuse("no position to flatten")
        failed = [r.message for r in results if not r.ok]
        text = f"{self.broker.mode} flatten all: {len(results) - len(failed)} of {len(results)} positions closing"
        if failed:
            text += f" (failed: {'; '.join(failed)})"
        self._say("info" if not failed else "warn", text)
        self.version += 1
        return ActionResult(not failed, text)

    def set_auto_approve(self, on: bool) -> ActionResult:
        """Turn auto-approve on or off (the window asks the trader first when live); said in the desk's messages."""
        was = self.proposals.auto_approve
        self.proposals.auto_approve = on
        self.version += 1
        state = "ON" if on else "OFF"
        if was != on:
            self._say("warn" if on else "info", f"auto-approve {state} ({self.broker.label})")
        return ActionResult(True, f"auto-approve {state}")

    def _stop_entry_problem(self, req: OrderRequest) -> str | None:
        """A stop order waits for the market to reach it: a buy stop above the market, a sell stop below. One already
        reached would trigger on arrival, a market order in disguise: refused in words."""
        last = self.last_price(req.symbol)
        if req.stop_price is None or last is None:
            return None  # risk says what is missing
        inst = self.instruments.get(req.symbol)
        buy = req.side is Side.BUY
        if (req.stop_price <= last) if buy else (req.stop_price >= last):
            side = "above" if buy else "below"
            return (f"{req.side.value} stop {inst.fmt_price(req.stop_price)} {req.symbol} is not {side} the market "
                    f"{inst.fmt_price(last)}: it would trigger at once; a {req.side.value.lower()} stop sits {side} "
                    "the market (use a market or limit order to trade now)")
        return None

    @staticmethod
    def _describe(req: OrderRequest, inst: Any) -> str:
        """An order in the trader's words: BUY 10.3 XRPUSDT limit @ 0.5901 (stop @ … for a stop order)."""
        price = ""
        if req.type is OrderType.LIMIT and req.limit_price is not None:
            price = f" @ {inst.fmt_price(req.limit_price)}"
        elif req.type is OrderType.STOP_MARKET and req.stop_price is not None:
            price = f" @ {inst.fmt_price(req.stop_price)}"
        kind = "stop" if req.type is OrderType.STOP_MARKET else req.type.value.lower()
        return f"{req.side.value} {inst.fmt_qty(req.qty)} {req.symbol} {kind}{price}"

    async def cancel(self, order_id: str) -> ActionResult:
        order = self.broker.get(order_id)
        async with self._serial([order.symbol] if order is not None else []):
            if await self.broker.cancel(order_id):
                log.info("cancel sent for order %s", order_id)
                return ActionResult(True, f"cancel sent for {order_id}")
        return self._refuse(f"order {order_id} is not open")

    async def flatten(self, symbol: str) -> ActionResult:
        async with self._serial([symbol]):
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
        self.risk.kill()  # at once: a command under way checks risk again before it sends anything
        async with self._serial(self._all_symbols()):  # then after the commands under way: theirs canceled too
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
        msg = f"KILL SWITCH: halted, {_count(canceled, 'order')} canceled, {_count(len(results), 'position')} flattened"
        if refused:
            msg += f"; the exchange refused to cancel {len(refused)}: {'; '.join(refused)}"
        if failed:
            msg += f" (failed: {'; '.join(failed)})"
        # What the trader asked for is a warning; a part the exchange refused or that failed is an error.
        self._say("error" if failed or refused else "warn", msg)
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

    def _veto(self, req: OrderRequest, *, without: str | set[str] = frozenset()) -> ActionResult | None:
        """Risk's verdict; ``without``: the orders a replacement stands for (not counted among the open ones)."""
        without = {without} if isinstance(without, str) else without
        veto = self.risk.check(
            req,
            last_price=self.last_price(req.symbol),
            position=self.portfolio.position(req.symbol),
            open_orders=[o for o in self.broker.open_orders(req.symbol) if o.id not in without],
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
        what = self._describe(order.request, self.instruments.get(req.symbol))  # as the broker took it
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


def _count(n: int, word: str) -> str:
    """"1 position", "2 positions"."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _request_dict(req: OrderRequest) -> dict[str, str | None]:
    return {
        "symbol": req.symbol,
        "side": req.side.value,
        "type": req.type.value,
        "qty": str(req.qty),
        "limit_price": None if req.limit_price is None else str(req.limit_price),
        "origin": req.origin.value,
    }
