"""How the exchange's word changes our orders: its trades become fills (each once, before the order update they
cause), its order states become ours (a state ahead of the fills seen waits for them, then asks over REST), and the
positions and balances follow. A part of ``LiveBroker`` (a mixin: it works on the broker's books)."""

from __future__ import annotations

import asyncio
import logging
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from app.models import Fill, Liquidity, Order, OrderStatus, Side
from app.trading.broker import end_order, fmt_decimal
from app.trading.exchange_errors import explain
from app.trading.live_exchange import ExOrder, ExTrade, parse_order, parse_trade
from app.trading.live_records import Reconciliation

log = logging.getLogger(__name__)

Q8 = Decimal("1e-8")
ZERO = Decimal(0)
FILL_GRACE_S = 0.5  # an order update ahead of the fills seen waits this long for them before asking over REST
_FINAL = {"FILLED": OrderStatus.FILLED, "CANCELED": OrderStatus.CANCELED, "EXPIRED": OrderStatus.CANCELED,
          "EXPIRED_IN_MATCH": OrderStatus.CANCELED, "REJECTED": OrderStatus.REJECTED}


class ExchangeUpdates:
    """Trades and order states from the user stream or REST, applied to the broker's orders."""

    def _find(self, client_id: str | None, exchange_id: str | None) -> Order | None:
        if client_id and (o := self._orders.get(client_id)) is not None and (
                not o.exchange_id or not exchange_id or o.exchange_id == exchange_id):
            return o
        if exchange_id and (oid := self._by_exchange.get(exchange_id)) is not None:
            return self._orders.get(oid)
        return None

    async def _apply_rest_order(self, order: Order, raw: Any, rec: Reconciliation | None = None) -> None:
        """An order as a REST answer gives it: its fills (when the answer has them), then its state; fills the
        answer lacks are fetched."""
        ex_order = parse_order(raw, order.symbol)
        bound, version = self._bind(order, ex_order.exchange_id), self.version
        for t in ex_order.trades:
            self._apply_trade(t, rec)
        if ex_order.filled > order.filled_qty:
            await self._recover_fills(order, rec)
        self._apply_state(order, ex_order)
        if bound and self.version == version:  # nothing else told the listeners: the journal needs the exchange id
            self._emit_order(order)

    def _bind(self, order: Order, exchange_id: str | None) -> bool:
        if exchange_id and order.exchange_id != exchange_id:
            order.exchange_id = exchange_id
            self._by_exchange[exchange_id] = order.id
            return True
        return False

    async def _recover_fills(self, order: Order, rec: Reconciliation | None) -> None:
        if not order.exchange_id:
            return
        try:
            trades = await self._client.fetch_my_trades(self._ccxt_symbol(order.symbol), None, None,
                                                        {"orderId": order.exchange_id})
        except Exception as exc:
            msg = f"order {order.id}: its fills could not be fetched: {explain(exc)}"
            if rec is not None:
                rec.errors.append(msg)
            else:
                self.counters.errors += 1
                log.warning("%s", msg)
            return
        parsed = sorted((p for t in trades if (p := parse_trade(t, order.symbol)).order_exchange_id in
                         (None, order.exchange_id)), key=lambda t: (t.ms, t.trade_id))
        self._skip_counted(order, parsed)
        for t in parsed:
            self._apply_trade(t, rec, recovered=rec is not None)

    def _skip_counted(self, order: Order, trades: list[ExTrade]) -> None:
        """A restored order's fills the journal holds are never emitted again. The journaled fill ids
        (``restore_ids``) say exactly which trades those are: a crash can leave a later trade journaled without an
        earlier one, so the order's filled quantity cannot tell them. Only what the journal counted without a known
        id (``restore_ids`` not given the fill ids) is taken from the exchange's earliest other trades."""
        counted = self._counted.pop(order.id, None)
        if counted is None:
            return
        known = sum((t.qty for t in trades if self._fill_id(t) in self._fill_ids), ZERO)
        rest, done = counted - known, ZERO
        for t in trades:
            fid = self._fill_id(t)
            if fid in self._fill_ids:
                continue
            if done + t.qty > rest:
                break
            self._fill_ids.add(fid)
            done += t.qty
        if known + done != counted:
            self.counters.errors += 1
            log.error("order %s: the journal holds %s filled, the exchange's trades %s of it by id and %s more "
                      "taken as the earliest", order.id, counted, known, done)

    def _fill_id(self, t: ExTrade) -> str:
        return f"{self.exchange}:{t.trade_id}"

    def _apply_trade(self, t: ExTrade, rec: Reconciliation | None, *, recovered: bool = False) -> None:
        fid = self._fill_id(t)
        if fid in self._fill_ids:
            return
        order = self._find(t.client_id, t.order_exchange_id)
        if order is None:
            if t.order_exchange_id:
                self._orphans.setdefault(t.order_exchange_id, []).append(t)
            return
        self._fill_ids.add(fid)
        self._bind(order, t.order_exchange_id)
        if order.id in self._never_placed:
            self.counters.errors += 1
            log.error("order %s was concluded never placed, yet the exchange filled it: taking the fill", order.id)
        inst = self.instruments.get(order.symbol)
        # The commission exactly as the exchange charged it, in its asset (the portfolio knows what each takes).
        fill = Fill(id=fid, order_id=order.id, symbol=order.symbol, side=order.request.side, qty=t.qty,
                    price=t.price, fee=t.fee, liquidity=Liquidity.MAKER if t.maker else Liquidity.TAKER,
                    exchange_ms=t.ms or self.clock_ms(), fee_asset=t.fee_asset)
        base_fee = t.fee if t.fee and t.fee_asset == inst.base else ZERO
        if t.fee and t.fee_asset not in (None, inst.quote, inst.base):
            log.warning("fill %s: commission %s %s is not counted in %s", fid, t.fee, t.fee_asset, inst.quote)
        # Order.fees is what the blotter adds up: the commission's value in the quote (a base fee at the fill price)
        fee = t.fee if t.fee_asset in (None, inst.quote) else \
            (base_fee * t.price).quantize(Q8, ROUND_HALF_EVEN)
        notional = self._notional.get(order.id, ZERO) + t.qty * t.price
        self._notional[order.id] = notional
        order.filled_qty += t.qty
        order.avg_price = (notional / order.filled_qty).quantize(Q8, rounding=ROUND_HALF_EVEN)
        order.fees += fee
        order.updated_ms = self.clock_ms()
        signed = t.qty if order.request.side is Side.BUY else -t.qty
        # the position the account holds: a commission taken in the base coin leaves it too
        self._positions[order.symbol] = self._positions.get(order.symbol, ZERO) + signed - base_fee
        self._expect_balances(inst.base, inst.quote, signed, t)
        self.counters.fills += 1
        if recovered or rec is not None:
            self.counters.fills_recovered += 1
            if rec is not None:
                rec.fills_recovered.append({"id": fid, "order_id": order.id, "qty": t.qty, "price": t.price})
        self._emit_fill(fill)
        waiting = self._ahead.get(order.id)
        if order.filled_qty >= order.request.qty:
            self._ahead.pop(order.id, None)
            self._close(order, OrderStatus.FILLED, None)
        elif waiting is not None and order.filled_qty >= waiting.filled:
            self._ahead.pop(order.id, None)
            self._apply_state(order, waiting)
        elif order.status.is_open:
            self._set_status(order, OrderStatus.PARTIALLY_FILLED)
        else:  # a late fill of an order already closed (canceled after a partial fill): its status stays
            self._emit_order(order)
        self._brackets.on_fill(order.symbol)

    def _expect_balances(self, base: str, quote: str, signed: Decimal, t: ExTrade) -> None:
        """What this fill does to the balances, unless the last snapshot already holds it (a fill made while the
        terminal was away, recovered after the snapshot was read; a fill during that read is told by the next
        reconciliation as a difference, then absorbed)."""
        if t.ms and t.ms < self._balances_ms:
            return
        b = self._balances
        b[base] = b.get(base, ZERO) + signed
        b[quote] = b.get(quote, ZERO) - signed * t.price
        if t.fee and t.fee_asset:
            b[t.fee_asset] = b.get(t.fee_asset, ZERO) - t.fee

    def _apply_state(self, order: Order, ex_order: ExOrder) -> None:
        """The exchange's state of an order, once every fill it counts has been applied."""
        changed = self._bind(order, ex_order.exchange_id)
        if ex_order.filled > order.filled_qty:  # fills still to come: wait for them (then REST)
            self._ahead[order.id] = ex_order
            self._spawn(self._fills_overdue(order), f"live-fills-{order.id}")
            if changed:
                self._emit_order(order)
            return
        final = _FINAL.get(ex_order.status)
        if final is None:
            if order.status is OrderStatus.REJECTED and order.id in self._never_placed:  # it was placed after all
                self.counters.errors += 1
                order.reject_reason = None
                self._open[order.id] = order
                self._set_status(order, OrderStatus.PARTIALLY_FILLED if order.filled_qty else OrderStatus.NEW)
            elif changed:
                self._emit_order(order)
            return
        if not order.status.is_open and order.status is final:
            if changed:
                self._emit_order(order)
            return
        reason = None
        if final is OrderStatus.CANCELED:
            reason = "canceled at the exchange" if ex_order.status == "CANCELED" else (
                f"the exchange filled {fmt_decimal(order.filled_qty)} of {fmt_decimal(order.request.qty)}; "
                "the rest expired")
        elif final is OrderStatus.REJECTED:
            reason = "the exchange rejected it"
            self.counters.orders_rejected += 1
        self._close(order, final, reason)

    async def _fills_overdue(self, order: Order) -> None:
        await asyncio.sleep(FILL_GRACE_S)
        waiting = self._ahead.get(order.id)
        if waiting is None:
            return
        await self._recover_fills(order, None)
        waiting = self._ahead.pop(order.id, None)
        if waiting is not None and order.filled_qty >= waiting.filled:
            self._apply_state(order, waiting)
        elif waiting is not None:
            self.counters.errors += 1
            log.error("order %s: the exchange counts %s filled but its trades show %s", order.id, waiting.filled,
                      order.filled_qty)

    def _set_status(self, order: Order, status: OrderStatus) -> None:
        end_order(order, status, None, self.clock_ms())
        self._emit_order(order)

    def _close(self, order: Order, status: OrderStatus, reason: str | None) -> None:
        end_order(order, status, reason, self.clock_ms())
        self._open.pop(order.id, None)
        self._emit_order(order)
