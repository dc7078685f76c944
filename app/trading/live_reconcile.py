"""The live broker's comparisons with the exchange account, and what it concludes about an order whose answer was
lost. A part of ``LiveBroker`` (a mixin: it works on the broker's books).

- **Reconciliation** (start, every reconnect of the user stream, a cancel refused ...): every open order of ours is
  looked up by client id and its missed fills recovered; exchange open orders of the session's symbols that we do
  not know are adopted (origin MANUAL); balances are compared with the last snapshot and the fills since; each
  session symbol's position (from fills) is compared with the coins the account holds, and a difference is
  reported (in the journal every time; a warning to the trader when it changes). Orders whose submit still awaits
  the exchange's answer are never concluded on: they are listed as unresolved. Last, bracket legs a crash left
  missing are placed (``live_brackets``: ``bracket_repairs``).
- **"Never placed" is concluded late.** Binance refuses a request once its ``timestamp + recvWindow`` has passed on
  the exchange's clock. So an order whose answer was lost (a timeout, a cut connection, -1006/-1007 "execution
  status unknown") is REJECTED as never placed only when the exchange's clock (``GET /time``) is past that moment
  *and* a lookup by client id afterwards still finds nothing. Until then it stays NEW (unresolved) and is never sent
  again. An order restored from the journal without an exchange id is given its registration time plus the client's
  timeout as the latest its request can have been signed.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

from app.models import Order, OrderOrigin, OrderRequest, OrderStatus, OrderType
from app.trading.broker import fmt_decimal
from app.trading.exchange_errors import ErrorKind, classify, explain
from app.trading.live_brackets import is_held
from app.trading.live_exchange import BINANCE_LIKE, ExOrder, balances_of, parse_order
from app.trading.live_records import Reconciliation

log = logging.getLogger(__name__)

ZERO = Decimal(0)
NEVER_PLACED = "the exchange never received it ({why}); nothing was placed"
MAX_NAP_S = 1.0  # an unresolved order is looked up again at least this often while its request may still arrive
SETTLE_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0) * 6  # an order the exchange could not be asked about: asked again


class Reconciler:
    """Reconciliation and the settling of orders whose answer was lost."""

    async def reconcile(self, trigger: str = "manual") -> Reconciliation:
        """Compare with the exchange: our open orders by client id (missed fills recovered, final states taken),
        exchange open orders we do not know (adopted), balances and positions. Journaled through ``journal_hook``."""
        async with self._reconcile_lock:
            rec = Reconciliation(trigger, self.clock_ms())
            for order in list(self._open.values()):
                if is_held(order):  # a take-profit held here was never sent: nothing to ask the exchange
                    continue
                if order.id in self._awaiting:  # its submit is still waiting for the answer: never concluded here
                    rec.unresolved.append(self._summary(order, note="its submit awaits the exchange's answer"))
                    continue
                await self._reconcile_order(order, rec)
            for sym in sorted(self._symbols):
                try:
                    listed = await self._client.fetch_open_orders(self._ccxt_symbol(sym))
                except Exception as exc:
                    rec.errors.append(f"{sym}: open orders could not be listed: {explain(exc)}")
                    continue
                for raw in listed:
                    ex_order = parse_order(raw, sym)
                    if self._find(ex_order.client_id, ex_order.exchange_id) is None:
                        adopted = await self._adopt(ex_order, rec)
                        rec.unknown_orders.append(self._summary(adopted, note="open at the exchange, not in the "
                                                                              "journal: adopted (origin MANUAL)"))
            await self._compare_balances(rec)
            try:  # legs a crash left missing, now that orders, fills and positions are settled
                await self._brackets.repair(rec)
            except Exception as exc:
                log.exception("the bracket legs could not be checked")
                rec.errors.append(f"bracket legs could not be checked: {explain(exc)}")
            self._finish(rec)
            return rec

    async def _reconcile_order(self, order: Order, rec: Reconciliation) -> None:
        before = (order.status, order.filled_qty, order.exchange_id)
        wait_ms = 0
        try:
            if not order.exchange_id:  # its answer may have been lost: when was it too late to arrive?
                wait_ms = await self._ms_until_refused(self._request_bound(order))
            found = await self._fetch_by_client_id(order)
        except Exception as exc:
            if classify(exc) is not ErrorKind.UNKNOWN_ORDER:
                rec.errors.append(f"order {order.id}: {explain(exc)}")
            elif wait_ms > 0:  # not there yet, but the exchange would still take its request
                rec.unresolved.append(self._summary(order, note=f"not at the exchange yet; its request may still "
                                                                f"arrive for {wait_ms / 1000:.1f} s"))
                if order.id not in self._settling:
                    self._spawn(self._settle_later(order), f"live-settle-{order.id}")
            else:
                self._never_placed.add(order.id)
                self._lost.pop(order.id, None)
                self._reject(order, "the exchange has no order with this id: it never arrived there")
                rec.orders_updated.append(self._summary(order, note="not at the exchange: never placed"))
            return
        self._lost.pop(order.id, None)
        await self._apply_rest_order(order, found, rec)
        if (order.status, order.filled_qty, order.exchange_id) != before:
            rec.orders_updated.append(self._summary(order))

    async def _refresh(self, order: Order, trigger: str) -> None:
        """Ask the exchange what became of one order (its fills recovered); journaled as a reconciliation."""
        async with self._reconcile_lock:
            rec = Reconciliation(trigger, self.clock_ms())
            await self._reconcile_order(order, rec)
            self._finish(rec)

    async def _adopt(self, ex_order: ExOrder, rec: Reconciliation | None) -> Order:
        """An exchange order this terminal did not place: taken in as MANUAL so the kill switch and positions
        include it; its fills so far recovered."""
        type_ = OrderType.LIMIT if ex_order.price is not None and ex_order.type.startswith("LIMIT") else \
            OrderType.STOP_MARKET if ex_order.stop_price is not None else OrderType.MARKET
        req = OrderRequest(ex_order.symbol, ex_order.side, type_, ex_order.qty,
                           limit_price=ex_order.price if type_ is OrderType.LIMIT else None,
                           stop_price=ex_order.stop_price if type_ is OrderType.STOP_MARKET else None,
                           origin=OrderOrigin.MANUAL)
        oid = f"{self.exchange}-{ex_order.exchange_id}"
        now = self.clock_ms()
        order = Order(oid, req, OrderStatus.NEW, created_ms=ex_order.ms or now, updated_ms=now,
                      exchange_id=ex_order.exchange_id)
        self._orders[oid] = order
        self._open[oid] = order
        self._by_exchange[ex_order.exchange_id] = oid
        self._symbols.add(ex_order.symbol)
        self.counters.orders_adopted += 1
        log.warning("adopted exchange order %s (%s %s %s) not placed by this terminal", ex_order.exchange_id,
                    ex_order.side.value, fmt_decimal(ex_order.qty), ex_order.symbol)
        self._emit_order(order)
        for t in self._orphans.pop(ex_order.exchange_id, []):
            self._apply_trade(t, rec)
        if ex_order.filled > order.filled_qty:
            await self._recover_fills(order, rec)
        self._apply_state(order, ex_order)
        return order

    async def _compare_balances(self, rec: Reconciliation) -> None:
        try:
            asked_ms = self.clock_ms()
            now = balances_of(await self._client.fetch_balance())
        except Exception as exc:
            rec.errors.append(f"balances could not be read: {explain(exc)}")
            return
        for asset in sorted(set(now) | set(self._balances)):
            expected, actual = self._balances.get(asset, ZERO), now.get(asset, ZERO)
            if expected != actual:
                rec.balance_differences.append({"asset": asset, "expected": expected, "exchange": actual,
                                                "difference": actual - expected})
        self._balances, self._balances_ms = now, asked_ms
        self._compare_positions(rec, now)

    def _compare_positions(self, rec: Reconciliation, balances: dict[str, Decimal]) -> None:
        """Each session symbol's position (from the fills) against the coins the account holds: coins bought
        before this session or elsewhere, or a fill missed, are never passed over in silence."""
        for sym in sorted(self._symbols):
            base = self.instruments.get(sym).base
            if not base:
                continue
            pos, coins = self._positions.get(sym, ZERO), balances.get(base, ZERO)
            diff = coins - pos
            if diff:
                rec.position_differences.append({"symbol": sym, "position": pos, "account": coins,
                                                 "difference": diff})
            if self._position_gaps.get(sym, ZERO) == diff:
                continue
            self._position_gaps[sym] = diff
            rec.changed_positions = True
            if diff:
                self._warn(f"{sym}: this session's position is {fmt_decimal(pos)} {base}, the account holds "
                           f"{fmt_decimal(coins)} {base} ({fmt_decimal(diff)} {base} not from this terminal's "
                           "fills); flatten and the kill switch act on the session's position only.")
            else:
                self._warn(f"{sym}: the account's {base} matches this session's position again.")

    def _finish(self, rec: Reconciliation) -> None:
        self.counters.reconciliations += 1
        self.counters.errors += len(rec.errors)
        if not rec.clean:
            log.info("reconciliation (%s): %s", rec.trigger, rec.report())
        if self.journal_hook is not None:
            try:
                self.journal_hook(rec.at_ms, self.exchange, self.account.account if self.account else "",
                                  rec.trigger, rec.report())
            except Exception:
                self.counters.errors += 1
                log.exception("the reconciliation could not be journaled")

    # ------------------------------------------------------------------------------------------------ lost answers

    async def _resolve_in_flight(self, order: Order, exc: BaseException, bound_ms: int) -> None:
        """The request may have reached the exchange (``bound_ms``: no later than this it was signed): ask for the
        client id until the exchange would refuse the request, never send it again."""
        self.counters.in_flight_lookups += 1
        why = explain(exc)
        log.warning("order %s: no answer from the exchange (%s); looking it up by client id", order.id, why)
        self._lost[order.id] = bound_ms
        rec = Reconciliation("in-flight", self.clock_ms())
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 2 * (self._refused_after_ms + self._timeout_ms) / 1000
        while True:
            try:
                wait_ms = await self._ms_until_refused(bound_ms)
                try:
                    found = await self._fetch_by_client_id(order)
                except Exception as lookup_exc:
                    if classify(lookup_exc) is not ErrorKind.UNKNOWN_ORDER:
                        raise
                    found = None
            except Exception as lookup_exc:
                rec.errors.append(f"order {order.id}: {explain(lookup_exc)}")
                break
            if found is not None:
                self._lost.pop(order.id, None)
                await self._apply_rest_order(order, found, rec)
                rec.orders_updated.append(self._summary(order, note="found by client id after a lost answer"))
                self._finish(rec)
                return
            if wait_ms <= 0:  # too late to arrive, and not there: it never was
                self._lost.pop(order.id, None)
                self._never_placed.add(order.id)
                rec.orders_updated.append(self._summary(order, note="not at the exchange: never placed"))
                self._reject(order, NEVER_PLACED.format(why=why.rstrip(".")))
                self._finish(rec)
                return
            if loop.time() > give_up:  # the exchange's clock does not move on: settle it later
                rec.errors.append(f"order {order.id}: the exchange's clock does not pass the request's time")
                break
            await asyncio.sleep(min(wait_ms / 1000, MAX_NAP_S))
        order.reject_reason = (f"sent, but the exchange's answer was lost ({why}) and it cannot be settled now; "
                               "the next reconciliation will")
        self._emit_order(order)
        self._finish(rec)
        if order.id not in self._settling:
            self._spawn(self._settle_later(order), f"live-settle-{order.id}")

    async def _settle_later(self, order: Order) -> None:
        self._settling.add(order.id)
        try:
            for delay in SETTLE_DELAYS_S:
                await asyncio.sleep(delay)
                if not order.status.is_open or order.exchange_id:
                    return
                try:
                    await self._refresh(order, "unsettled order")
                except Exception as exc:
                    log.warning("order %s is still unsettled: %s", order.id, explain(exc))
        finally:
            self._settling.discard(order.id)

    def _request_bound(self, order: Order) -> int:
        """The latest time (the exchange's request clock) its request can have been signed."""
        return self._lost.get(order.id, order.created_ms + self._timeout_ms)

    def _signing_clock_ms(self) -> int:
        """ccxt's clock for the timestamp it signs (Binance: less its time difference, when it adjusts for one)."""
        diff = (self._client.options.get("timeDifference") or 0) if self.exchange in BINANCE_LIKE else 0
        return int(self._client.milliseconds() - diff)

    async def _ms_until_refused(self, bound_ms: int) -> int:
        """How long, on the exchange's clock, a request signed at ``bound_ms`` may still be accepted."""
        server_ms = await self._client.fetch_time()
        return int(bound_ms + self._refused_after_ms - int(server_ms)) + 1

    async def _fetch_by_client_id(self, order: Order) -> Any:
        symbol = self._ccxt_symbol(order.symbol)
        if order.exchange_id:
            return await self._client.fetch_order(order.exchange_id, symbol)
        key = "origClientOrderId" if self.exchange in BINANCE_LIKE else "clientOrderId"
        return await self._client.fetch_order(None, symbol, {key: order.id})
