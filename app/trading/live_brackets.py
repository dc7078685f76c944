"""Bracket legs for LiveBroker: the stop-loss at the exchange, the take-profit held by the terminal.

Binance spot cannot hold a stop-loss and a take-profit for the same coins as two plain orders (the first locks the
coins; the second fails for balance), and only the stop must survive the terminal being closed. So:

- **The stop-loss is an exchange order.** When an entry with ``stop_loss_pct`` is done (FILLED, or canceled /
  expired after a partial fill), a STOP_LOSS (market once triggered: a stop must get out; a stop-limit can be jumped
  in a fast market and leave the position unprotected) is sent for the filled quantity (less any commission taken in
  the base asset, down to the lot) at ``avg × (1 ∓ sl%)`` on the tick (half-even, as PaperBroker). It is an ordinary
  order of ours: client order id = our id, origin BRACKET, ``parent_id`` = the entry, reduce-only in our books,
  journaled, reconciled. If the market is already through the stop (the exchange says the stop would trigger at
  once), the position is closed at market instead, which is what the stop would have done.
- **The take-profit is held here.** An open Order (origin BRACKET, LIMIT at ``avg × (1 ± tp%)``, NEW, a note saying
  it is held by the terminal), id ``{prefix}{n}-TP``: the suffix marks it as never sent, so reconciliation never
  looks it up at the exchange. It is journaled like any order and restored after a restart. ``on_market`` watches
  trades: one at or through the take-profit price cancels the stop at the exchange first, then sends the exit as a
  MARKET order (reduce-only, capped at the position). Market, not a limit IOC at the price: the stop is already gone,
  and an IOC that misses would leave the position unprotected. If the stop cannot be canceled because it has
  triggered, its fills are fetched and nothing more is sent (no oversell). If the exit fills only in part, a new stop
  at the old price protects the rest.
- **Linked.** A stop fill shrinks the take-profit to what the stop has not sold (the journal never changes a
  request, so the held order is replaced by one for the smaller quantity) and ends it when the stop has filled.
  When the position is gone (flattened, sold elsewhere), both legs end: the stop canceled at the exchange, the
  take-profit here. ``cancel_all`` (the kill switch) ends the held take-profits here and the stops at the exchange.
- **After a crash** (``repair``, at every reconciliation: start and each reconnect; each finding is journaled in the
  reconciliation's ``bracket_repairs`` and told to the trader). Covered:

  - *the entry filled, its legs not placed*: a done entry of the journal (``Journal.bracket_orders``, given through
    ``restore_bracket_orders``) on a session symbol with no leg ever recorded gets its legs as at its completion,
    for what is still held (the position, less what open stops already cover, capped to the account's coins). An
    open stop at the exchange on that symbol and side (its own leg, or an adopted one) means no second stop and
    no take-profit.
  - *the stop canceled for the take-profit, the exit not sent*: a held take-profit whose stop is canceled (not
    filled) while the position remains exits now if the last price is at or through it, else a new stop at the
    original price (``avg × (1 ∓ sl%)``) protects the position again. A stop the exchange canceled by itself
    counts the same.
  - *an entry open in the journal* (its last update lost): the reconciliation learns it is done and the legs follow
    as usual; *a stop in flight* is settled by client id like any order (never sent twice).

  Not covered: legs that ended on purpose are not put back (a stop the trader canceled, the kill switch, a stop
  that sold, a stop the exchange refused when it was placed); a take-profit is held only while the terminal runs,
  so a price that reaches it while the terminal is closed does nothing until the next trade at or through it (the
  stop still rests at the exchange); a position without a journaled entry (coins bought elsewhere) gets no legs;
  when the last price is unknown at start a take-profit's gap gets a stop, and the next trade at the take-profit
  exits as usual. A crash between the exit being sent and its fill is settled by client id (the exit is an
  ordinary order).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from app.models import MarketEvent, Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Side, Trade
from app.trading.broker import LegMove
from app.trading.broker import fmt_decimal as _fmt
from app.trading.exchange_errors import ErrorKind, classify, explain

if TYPE_CHECKING:
    from app.trading.live_broker import LiveBroker
    from app.trading.live_records import Reconciliation

log = logging.getLogger(__name__)

HELD_SUFFIX = "-TP"
ZERO = Decimal(0)
HUNDRED = Decimal(100)
TRADER_CANCELED = "canceled by the trader"  # a stop leg the trader canceled: its position is left as he chose


def is_held(order: Order) -> bool:
    """A take-profit the terminal holds: never sent, never to be looked up at the exchange."""
    return order.id.endswith(HELD_SUFFIX) and order.request.origin is OrderOrigin.BRACKET and not order.exchange_id


def _closing(req: OrderRequest) -> Side:
    """The side that closes what ``req`` opens."""
    return Side.SELL if req.side is Side.BUY else Side.BUY


def _held_note(side: Side, price: Decimal) -> str:
    return (f"take-profit held by the terminal, not at the exchange: a market {side.value.lower()} is sent when a "
            f"trade reaches {price.normalize():f} (only while the terminal runs)")


class LiveBrackets:
    def __init__(self, broker: LiveBroker) -> None:
        self.b = broker
        self._attached: set[str] = set()  # entries whose legs were placed (or are being placed)
        self._attaching: dict[str, asyncio.Task[None]] = {}
        self._held: dict[str, Order] = {}  # open take-profits, by id
        self._stop_of: dict[str, str] = {}  # parent (entry) id -> its stop leg's id
        self._triggering: set[str] = set()  # take-profits whose exit is under way
        self._ending: set[str] = set()  # stops being canceled because their position is gone
        self._tp_stops: set[str] = set()  # stops canceled by a take-profit: not "the position is gone"
        self._closed_at_market: set[str] = set()  # stops refused as already reached: the position closed instead
        self._past_entries: dict[str, Order] = {}  # done entries from the journal (restart), by id
        self._past_legs: dict[str, list[Order]] = {}  # their legs from the journal, by parent, oldest first

    # ------------------------------------------------------------------------------------------------ hooks

    def held(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self._held.values() if symbol is None or o.symbol == symbol]

    def restore(self, orders: Iterable[Order]) -> None:
        """Restored open orders: held take-profits watched again, legs linked to their entry by ``parent_id``."""
        for o in orders:
            pid = o.request.parent_id
            if o.request.origin is not OrderOrigin.BRACKET or pid is None:
                continue
            self._attached.add(pid)
            if is_held(o):
                self._held[o.id] = o
            elif o.request.type is OrderType.STOP_MARKET:
                self._stop_of[pid] = o.id

    def restore_history(self, orders: Iterable[Order]) -> None:
        """The journal's done bracketed entries and their legs (``Journal.bracket_orders``), before ``start``: an
        entry with a leg recorded had its legs placed; one without is what a crash left, for ``repair``."""
        for o in orders:
            pid = o.request.parent_id
            if o.request.origin is OrderOrigin.BRACKET:
                if pid is not None:
                    self._attached.add(pid)
                    self._past_legs.setdefault(pid, []).append(o)
            elif not o.status.is_open and o.filled_qty > 0 and o.avg_price is not None:
                self._past_entries[o.id] = o

    def pending(self, order_id: str) -> asyncio.Task[None] | None:
        return self._attaching.get(order_id)

    def on_order(self, order: Order) -> None:
        """Every order change (called after the listeners): an entry done gets its legs; a stop leg's fills
        shrink or end its take-profit."""
        req = order.request
        if req.origin is not OrderOrigin.BRACKET:
            if (req.bracketed and not order.status.is_open
                    and order.filled_qty > 0 and order.id not in self._attached):
                self._attached.add(order.id)
                task = asyncio.get_running_loop().create_task(self._attach(order), name=f"live-bracket-{order.id}")
                self._attaching[order.id] = task
                task.add_done_callback(lambda _t, oid=order.id: self._attaching.pop(oid, None))
            return
        # A STOP_LOSS executes at once when triggered: it is then FILLED, or expired after a partial fill (a thin
        # book). Acting on its end, not on each fill, replaces the take-profit once, not once per book level;
        # meanwhile a take-profit exit is capped at the position anyway.
        if (req.type is not OrderType.STOP_MARKET or req.parent_id is None or order.filled_qty <= 0
                or order.status.is_open):
            return
        for tp in self._takes_of(req.parent_id):
            left = order.remaining
            if left <= 0:
                self._end(tp, f"the stop-loss {order.id} filled")
            elif left < tp.request.qty:
                self._shrink(tp, left, f"the stop-loss {order.id} sold {_fmt(order.filled_qty)}")

    def on_fill(self, symbol: str) -> None:
        """After a fill: legs whose position is gone end (the stop at the exchange, the take-profit here)."""
        room = self.b._positions.get(symbol, ZERO)
        for tp in self.held(symbol):
            if (room if tp.request.side is Side.SELL else -room) <= 0 and tp.id not in self._triggering:
                self._end(tp, "the position is closed; nothing left to take profit on")
        for stop_id in list(self._stop_of.values()):
            stop = self.b._open.get(stop_id)
            if (stop is None or stop.symbol != symbol or stop.id in self._ending or stop.id in self._tp_stops
                    or (room if stop.request.side is Side.SELL else -room) > 0):
                continue
            self._ending.add(stop.id)
            self.b._spawn(self._cancel_stop(stop, "the position is closed"), f"live-end-stop-{stop.id}")

    def on_market(self, batch: Iterable[MarketEvent]) -> None:
        if not self._held:
            return
        for ev in batch:
            if not isinstance(ev, Trade):
                continue
            price: Decimal | None = None
            for tp in self.held(ev.symbol):
                if tp.id in self._triggering:
                    continue
                price = price if price is not None else Decimal(str(ev.price))
                limit = tp.request.limit_price
                assert limit is not None
                if price >= limit if tp.request.side is Side.SELL else price <= limit:
                    self._triggering.add(tp.id)
                    self.b._spawn(self._take_profit(tp, price), f"live-take-profit-{tp.id}")

    def cancel_held(self, order_id: str, reason: str | None) -> bool:
        tp = self._held.get(order_id)
        if tp is None:
            return False
        self._end(tp, reason)
        return True

    async def replace_leg(self, order_id: str, req: OrderRequest) -> LegMove:
        """Move a leg: a held take-profit is replaced here (nothing at the exchange); a stop is canceled at the
        exchange first (the coins it locks are free only then), then placed at the new price for what it had left.
        A new stop the exchange refuses is placed again at the old price, and that put-back is checked: if it is
        refused too, the position has no stop (an error in the log, ``unprotected``). One the exchange says would
        trigger at once (the market moved past it meanwhile) closes the position at market, as the stop would have
        (``_place_stop``). A stop that could not be canceled stays (``kept``); one that filled during the cancel
        is said (``filled``)."""
        b = self.b
        old = b._open.get(order_id)
        if old is None:
            done = b._orders.get(order_id)
            if done is not None and done.status is OrderStatus.FILLED:
                return LegMove(filled=True)
            return LegMove(why=f"{order_id} is no open bracket leg")
        if old.request.origin is not OrderOrigin.BRACKET:
            return LegMove(why=f"{order_id} is no bracket leg")
        if is_held(old):
            assert req.limit_price is not None
            new = self._hold(dataclasses.replace(old.request, limit_price=req.limit_price))
            self._end(old, f"moved: replaced by {new.id} at {_fmt(req.limit_price)}")
            return LegMove(moved=True, new=new)
        if old.request.type is not OrderType.STOP_MARKET or req.stop_price is None:
            return LegMove(kept=old, why="only a stop price moves a stop-loss")
        was = old.request.stop_price
        self._tp_stops.add(old.id)  # canceled on purpose, the position stays: not "the position is gone"
        try:
            resp = await b._cancel_at_exchange(old.symbol, old.exchange_id, None if old.exchange_id else old.id)
        except Exception as exc:
            self._tp_stops.discard(old.id)
            b.counters.cancel_refusals += 1
            why = f"it could not be canceled: {explain(exc)}"
            log.warning("stop %s not moved: %s", old.id, why)
            if classify(exc) is ErrorKind.UNKNOWN_ORDER:
                await b._refresh(old, "stop move: not cancelable")
            return self._after_failed_cancel(old, why)
        b.counters.cancels += 1
        await b._apply_rest_order(old, resp)
        if old.status is not OrderStatus.CANCELED:
            return self._after_failed_cancel(old, "the exchange did not cancel it")
        old.reject_reason = f"moved: replaced by a stop at {_fmt(req.stop_price)}"
        b._emit_order(old)
        qty = min(old.remaining, self._room(old.symbol, old.request.side))
        if qty <= 0:
            return LegMove(filled=old.filled_qty > 0, why="no position left to protect")
        base = dataclasses.replace(old.request, type=OrderType.MARKET, qty=qty, stop_price=None)
        new = await self._place_stop(base, req.stop_price)
        if new.status.is_open or new.status is OrderStatus.FILLED:
            return LegMove(moved=True, new=new)
        if self._out_at_market(new):
            return LegMove(new=new, closed_at_market=True)
        why = new.reject_reason or "refused"
        if was is None:
            return LegMove(new=new, why=why, unprotected=True)
        log.warning("stop %s refused at %s (%s): placed again at %s", new.id, req.stop_price, why, was)
        back = await self._place_stop(base, was)
        if back.status.is_open or back.status is OrderStatus.FILLED:
            return LegMove(new=new, kept=back, why=why)
        if self._out_at_market(back):
            return LegMove(new=new, closed_at_market=True, why=why)
        log.error("stop %s refused at %s (%s) and the old stop could not be put back at %s (%s): %s %s is NOT "
                  "protected", new.id, req.stop_price, why, was, back.reject_reason, _fmt(qty), old.symbol)
        return LegMove(new=new, why=f"{why}; put back: {back.reject_reason or 'refused'}", unprotected=True)

    def _after_failed_cancel(self, old: Order, why: str) -> LegMove:
        """The stop was not canceled: still working (kept), filled meanwhile, or gone for another reason."""
        if old.status.is_open:
            return LegMove(kept=old, why=why)
        if old.status is OrderStatus.FILLED:
            return LegMove(filled=True)
        return LegMove(why=f"{why}; it is no longer at the exchange ({old.status.value.lower()})",
                       unprotected=self._room(old.symbol, old.request.side) > 0)

    async def add_leg(self, req: OrderRequest) -> Order | None:
        """A leg for a position without one, linked to its sibling by ``parent_id``: a stop at the exchange (for
        what the account holds), or a take-profit held here. None when nothing is left to protect."""
        pid = req.parent_id or ""
        self._attached.add(pid)
        base = dataclasses.replace(req, type=OrderType.MARKET, origin=OrderOrigin.BRACKET, reduce_only=True,
                                   limit_price=None, stop_price=None)
        if req.type is OrderType.STOP_MARKET and req.stop_price is not None:
            qty = min(req.qty, self._free_room(req.symbol, req.side))
            if qty <= 0:
                return None
            return await self._place_stop(dataclasses.replace(base, qty=qty), req.stop_price)
        if req.type is OrderType.LIMIT and req.limit_price is not None:
            qty = min(req.qty, self._room(req.symbol, req.side))
            return self._hold(dataclasses.replace(base, type=OrderType.LIMIT, qty=qty,
                                                  limit_price=req.limit_price)) if qty > 0 else None
        return None

    # ------------------------------------------------------------------------------------------------ after a crash

    async def repair(self, rec: Reconciliation) -> None:
        """At every reconciliation, once orders, fills and balances are settled: the legs a crash left missing
        (module docstring). Each finding goes to ``rec.bracket_repairs`` and to the trader."""
        for entry in sorted(self._past_entries.values(), key=lambda o: o.created_ms):
            if entry.id not in self._attached and entry.symbol in self.b._symbols:
                await self._repair_entry(entry, rec)
        for tp in list(self._held.values()):
            await self._repair_take_profit(tp, rec)

    async def _repair_entry(self, entry: Order, rec: Reconciliation) -> None:
        """A done entry of the journal with no leg ever recorded: the terminal stopped before placing them."""
        b, req, sym = self.b, entry.request, entry.symbol
        self._attached.add(entry.id)  # decided once: never a second set of legs for it
        close = _closing(req)
        found = self._open_stop(entry.id, sym, close)
        what = (f"{entry.id} ({req.side.value} {_fmt(entry.filled_qty)} {sym}) was filled, but the terminal stopped "
                "before its bracket legs were placed")
        if found is not None:  # adopted from the exchange: its coins are locked; a second stop would be refused
            self._found(rec, entry, "already protected",
                        f"{what}; the stop-loss {found.id} at {_fmt(found.request.stop_price or ZERO)} already rests "
                        f"at the exchange for {sym}: no second stop was placed, no take-profit is held.",
                        stop=found.id)
            return
        qty = min(b.instruments.get(sym).round_qty(entry.filled_qty), self._free_room(sym, close))
        if qty <= 0:
            log.info("entry %s: its legs were never placed and no position is left to protect", entry.id)
            return
        stop, tp = await self._place_legs(entry, qty)
        held = (f"; the take-profit {tp.id} is held at {_fmt(tp.request.limit_price or ZERO)}" if tp is not None
                else "")
        if stop is None:
            action, note = "legs placed", f"{what}; it has no stop-loss{held}."
        elif stop.status.is_open or stop.status is OrderStatus.FILLED:
            action, note = "legs placed", (f"{what}; its stop-loss {stop.id} for {_fmt(qty)} at "
                                           f"{_fmt(stop.request.stop_price or ZERO)} is at the exchange now{held}.")
        elif self._out_at_market(stop):
            action, note = "closed at market", (f"{what}; the market is already through its stop-loss price "
                                                f"{_fmt(stop.request.stop_price or ZERO)}, so the position was "
                                                "closed at market.")
        else:
            action, note = "stop refused", (f"{what}; its stop-loss was refused ({stop.reject_reason}): the "
                                            f"position is NOT protected at the exchange{held}.")
        self._found(rec, entry, action, note, stop=stop.id if stop else None, take_profit=tp.id if tp else None)

    async def _repair_take_profit(self, tp: Order, rec: Reconciliation) -> None:
        """A held take-profit whose stop was canceled (the take-profit reached) and no exit followed: exit now if
        the market is at or through it, else a new stop at the original price protects the position again."""
        b, pid, side, sym = self.b, tp.request.parent_id, tp.request.side, tp.symbol
        if pid is None or tp.id in self._triggering or not tp.status.is_open:
            return  # its exit is under way (or done): not a gap
        if self._open_stop(pid, sym, side) is not None:
            return
        stop = self._last_stop(pid)
        if (stop is None or stop.status is not OrderStatus.CANCELED or stop.filled_qty > 0
                or stop.reject_reason == TRADER_CANCELED):
            return  # no stop-loss asked for; one that sold (its take-profit shrank); or the trader's choice
        room = min(tp.request.qty, self._free_room(sym, side))
        if room <= 0:
            return  # nothing left to protect: the position is gone
        entry = b._orders.get(pid) or self._past_entries.get(pid)
        # The last stop's own price: where the trader moved it, if he did (else the entry's percentage anyway).
        stop_price = stop.request.stop_price or (self._stop_price(entry) if entry is not None else None)
        limit = tp.request.limit_price
        assert limit is not None and stop_price is not None
        price = b.price_of(sym) if b.price_of is not None else None
        what = (f"The stop-loss {stop.id} of {pid} is no longer at the exchange (canceled: the take-profit was "
                f"reached, and no exit followed) while its take-profit {tp.id} at {_fmt(limit)} is still held: "
                f"{_fmt(room)} {sym} was unprotected")
        if price is not None and (price >= limit if side is Side.SELL else price <= limit):
            self._triggering.add(tp.id)
            exit_order = await self._take_profit(tp, price, stop_price)
            if exit_order is None:
                self._found(rec, None, "exit failed", f"{what}; the market is at {_fmt(price)}, but the exit could "
                            "not be sent (see the log): the take-profit stays held.", take_profit=tp.id, parent=pid)
                return
            self._found(rec, None, "exit sent", f"{what}; the market is at {_fmt(price)}, so the exit "
                        f"{exit_order.id} (market) was sent now.", take_profit=tp.id, exit=exit_order.id, parent=pid)
            return
        base = dataclasses.replace(tp.request, type=OrderType.MARKET, qty=room, limit_price=None)
        new = await self._place_stop(base, stop_price)
        if new.status.is_open or new.status is OrderStatus.FILLED:
            action, note = "stop placed", (f"{what}; a new stop-loss {new.id} at {_fmt(stop_price)} is at the "
                                           "exchange now, the take-profit stays held.")
        elif self._out_at_market(new):
            action, note = "closed at market", (f"{what}; the market is already through the stop-loss price "
                                                f"{_fmt(stop_price)}, so the position was closed at market.")
        else:
            action, note = "stop refused", (f"{what}; a new stop-loss was refused ({new.reject_reason}): the "
                                            "position is NOT protected at the exchange.")
        self._found(rec, None, action, note, take_profit=tp.id, stop=new.id, parent=pid)

    def _found(self, rec: Reconciliation, entry: Order | None, action: str, note: str, **ids: str | None) -> None:
        parent = ids.pop("parent", None) or (entry.id if entry is not None else None)
        rec.bracket_repairs.append({"entry": parent, "action": action, "note": note,
                                    **{k: v for k, v in ids.items() if v is not None}})
        self.b._warn(note)

    def _open_stop(self, parent_id: str, symbol: str, side: Side) -> Order | None:
        """An open stop at the exchange (or on its way) protecting ``parent_id``'s position: its own leg, or an
        adopted stop (origin MANUAL) on the same symbol and side, whose coins are locked already."""
        for o in self.b._open.values():
            r = o.request
            if (r.type is OrderType.STOP_MARKET and o.symbol == symbol and r.side is side
                    and (r.parent_id == parent_id or r.origin is OrderOrigin.MANUAL)):
                return o
        return None

    def _free_room(self, symbol: str, side: Side) -> Decimal:
        """What a new stop on ``side`` may cover: the position less what open stops already cover."""
        covered = sum((o.remaining for o in self.b._open.values() if o.request.type is OrderType.STOP_MARKET
                       and o.symbol == symbol and o.request.side is side), ZERO)
        return self.b.instruments.get(symbol).round_qty(max(self._room(symbol, side) - covered, ZERO))

    def _last_stop(self, parent_id: str) -> Order | None:
        """The entry's latest stop leg: this session's (or restored), else the journal's."""
        stop = self.b._orders.get(self._stop_of.get(parent_id, ""))
        if stop is not None:
            return stop
        past = [o for o in self._past_legs.get(parent_id, ()) if o.request.type is OrderType.STOP_MARKET]
        return past[-1] if past else None

    # ------------------------------------------------------------------------------------------------ legs

    def _takes_of(self, parent_id: str) -> list[Order]:
        return [o for o in self._held.values() if o.request.parent_id == parent_id]

    def _end(self, tp: Order, reason: str | None) -> None:
        self._held.pop(tp.id, None)
        if tp.status.is_open:
            self.b._close(tp, OrderStatus.CANCELED, reason)

    def _shrink(self, tp: Order, qty: Decimal, why: str) -> None:
        """The journal never changes a request: the held order is replaced by one for ``qty``."""
        new = self._hold(dataclasses.replace(tp.request, qty=qty))
        self._end(tp, f"{why}: replaced by {new.id} for {_fmt(qty)}")

    def _hold(self, req: OrderRequest) -> Order:
        b = self.b
        now = b.clock_ms()
        assert req.limit_price is not None
        order = Order(id=f"{b.id_prefix}{b._next_order}{HELD_SUFFIX}", request=req, status=OrderStatus.NEW,
                      created_ms=now, updated_ms=now, reject_reason=_held_note(req.side, req.limit_price))
        b._next_order += 1
        b._orders[order.id] = order
        b._open[order.id] = order
        self._held[order.id] = order
        b._emit_order(order)
        return order

    async def _attach(self, entry: Order) -> None:
        try:
            await self._attach_legs(entry)
        except Exception:  # submit awaits this task: a failure here must not surface as the entry's
            self.b.counters.errors += 1
            log.exception("the bracket legs of %s could not be placed", entry.id)

    async def _attach_legs(self, entry: Order) -> None:
        b, req = self.b, entry.request
        # what the entry bought and the account still holds (a commission in the base coin is gone), on the lot
        qty = min(b.instruments.get(req.symbol).round_qty(entry.filled_qty), b.closable(req.symbol, _closing(req)))
        if qty <= 0:
            log.warning("entry %s: nothing to protect after commission (%s filled)", entry.id, entry.filled_qty)
            return
        await self._place_legs(entry, qty)

    async def _place_legs(self, entry: Order, qty: Decimal) -> tuple[Order | None, Order | None]:
        """The stop at the exchange, then the take-profit held here, for ``qty`` of what ``entry`` bought (or sold);
        no take-profit once the stop found the market already through it (the position is out)."""
        req = entry.request
        inst = self.b.instruments.get(req.symbol)
        assert entry.avg_price is not None
        base = OrderRequest(symbol=req.symbol, side=_closing(req), type=OrderType.MARKET, qty=qty,
                            origin=OrderOrigin.BRACKET, proposal_id=req.proposal_id, parent_id=entry.id,
                            reduce_only=True)
        stop: Order | None = None
        if (stop_price := self._stop_price(entry)) is not None:
            stop = await self._place_stop(base, stop_price)
            if stop.status is OrderStatus.FILLED or self._out_at_market(stop):
                return stop, None  # the position is already out: no take-profit for it
        tp: Order | None = None
        if req.take_profit_price is not None:  # typed as a price: where it was typed, whatever the fill
            tp = self._hold(dataclasses.replace(base, type=OrderType.LIMIT,
                                                limit_price=inst.round_price(req.take_profit_price, ROUND_HALF_EVEN)))
        elif req.take_profit_pct is not None:
            k = 1 + req.take_profit_pct / HUNDRED if req.side is Side.BUY else 1 - req.take_profit_pct / HUNDRED
            tp = self._hold(dataclasses.replace(base, type=OrderType.LIMIT,
                                                limit_price=inst.round_price(entry.avg_price * k, ROUND_HALF_EVEN)))
        return stop, tp

    def _stop_price(self, entry: Order) -> Decimal | None:
        req = entry.request
        if req.stop_loss_price is not None:  # typed as a price: where it was typed, whatever the fill
            return self.b.instruments.get(req.symbol).round_price(req.stop_loss_price, ROUND_HALF_EVEN)
        if req.stop_loss_pct is None or entry.avg_price is None:
            return None
        k = 1 - req.stop_loss_pct / HUNDRED if req.side is Side.BUY else 1 + req.stop_loss_pct / HUNDRED
        return self.b.instruments.get(req.symbol).round_price(entry.avg_price * k, ROUND_HALF_EVEN)

    def _out_at_market(self, stop: Order) -> bool:
        """The stop was refused as already reached and the position closed at market instead."""
        return stop.status is OrderStatus.REJECTED and stop.id in self._closed_at_market

    async def _place_stop(self, base: OrderRequest, stop_price: Decimal) -> Order:
        b = self.b
        stop = await b.submit(dataclasses.replace(base, type=OrderType.STOP_MARKET, stop_price=stop_price))
        if stop.status.is_open or stop.status is OrderStatus.FILLED:
            self._stop_of[base.parent_id or ""] = stop.id
            return stop
        if b._refusal_kind.pop(stop.id, None) is ErrorKind.WOULD_TRIGGER:
            # the market is already through the stop: do what the stop would have done
            self._closed_at_market.add(stop.id)
            room = self._room(base.symbol, base.side)
            if room > 0:
                log.warning("stop %s: the market is already through %s; closing at market", stop.id, stop_price)
                await b.submit(dataclasses.replace(base, qty=min(base.qty, room)))
        else:
            log.warning("stop-loss %s refused (%s): the position is not protected at the exchange", stop.id,
                        stop.reject_reason)
        return stop

    def _room(self, symbol: str, side: Side) -> Decimal:
        """How much a reduce-only order on ``side`` may trade: what the position holds the other way (on the lot,
        never more than the account holds)."""
        return self.b.closable(symbol, side)

    async def _cancel_stop(self, stop: Order, why: str) -> None:
        b = self.b
        try:
            resp = await b._cancel_at_exchange(stop.symbol, stop.exchange_id, None if stop.exchange_id else stop.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            b.counters.cancel_refusals += 1
            log.warning("stop %s could not be canceled (%s): %s", stop.id, why, explain(exc))
            self._ending.discard(stop.id)
            return
        b.counters.cancels += 1
        await b._apply_rest_order(stop, resp)
        if stop.status is OrderStatus.CANCELED:
            stop.reject_reason = f"canceled: {why}"
            b._emit_order(stop)

    async def _take_profit(self, tp: Order, price: Decimal, stop_price: Decimal | None = None) -> Order | None:
        try:
            return await self._take_profit_now(tp, price, stop_price)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.b.counters.errors += 1
            log.exception("take-profit %s could not be carried out", tp.id)
            return None
        finally:
            self._triggering.discard(tp.id)

    async def _take_profit_now(self, tp: Order, price: Decimal, stop_price: Decimal | None = None) -> Order | None:
        """Cancel the stop at the exchange, then exit at market; returns the exit order (None: none sent).
        ``stop_price``: where a stop protects what the exit leaves, when the stop is not in this session's books."""
        b = self.b
        stop = b._orders.get(self._stop_of.get(tp.request.parent_id or "", ""))
        if stop is not None and stop.status.is_open:
            self._tp_stops.add(stop.id)
            try:
                resp = await b._cancel_at_exchange(stop.symbol, stop.exchange_id,
                                                   None if stop.exchange_id else stop.id)
            except Exception as exc:
                b.counters.cancel_refusals += 1
                self._tp_stops.discard(stop.id)
                if classify(exc) is ErrorKind.UNKNOWN_ORDER:
                    # it has triggered (or is gone): learn what it did; its fills end or shrink the take-profit
                    log.info("take-profit %s reached but the stop %s is no longer cancelable: nothing sent",
                             tp.id, stop.id)
                    await b._refresh(stop, "take-profit: stop not cancelable")
                else:  # stays held; the next trade at the price tries again
                    log.warning("take-profit %s: the stop %s could not be canceled: %s", tp.id, stop.id,
                                explain(exc))
                return None
            b.counters.cancels += 1
            await b._apply_rest_order(stop, resp)
            if stop.status.is_open:
                return None
            if stop.status is OrderStatus.CANCELED:
                stop.reject_reason = f"canceled: the take-profit {tp.id} was reached"
                b._emit_order(stop)
        if not tp.status.is_open:  # the stop's fills ended it meanwhile
            return None
        qty = min(tp.request.qty, self._room(tp.symbol, tp.request.side))
        if qty <= 0:
            self._end(tp, "take-profit reached, but no position is left to sell" if tp.request.side is Side.SELL
                      else "take-profit reached, but no position is left to buy back")
            return None
        exit_id = f"{b.id_prefix}{b._next_order}"
        self._end(tp, f"take-profit reached at {_fmt(price)}: exit sent to the exchange as {exit_id} (market)")
        exit_req = dataclasses.replace(tp.request, type=OrderType.MARKET, qty=qty, limit_price=None)
        exit_order = await b.submit(exit_req)
        stop_price = stop_price or (stop.request.stop_price if stop is not None else None)
        if exit_order.filled_qty < qty and stop_price is not None:
            rest = min(qty - exit_order.filled_qty, self._room(tp.symbol, tp.request.side))
            if rest > 0:  # the exit did not complete: the rest must not stay unprotected
                log.warning("take-profit exit %s filled %s of %s: a stop protects the rest", exit_order.id,
                            exit_order.filled_qty, qty)
                await self._place_stop(dataclasses.replace(exit_req, qty=rest), stop_price)
        return exit_order
