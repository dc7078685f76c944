"""LiveBroker: approved orders to a real exchange through ccxt (Binance spot first; the built-in exchange speaks the
same API on loopback), the second implementation of the Broker protocol beside PaperBroker.

What a careful trader can rely on:

- **One order, never two.** Our order id is the exchange's client order id (``newClientOrderId``). The order is
  registered (NEW) and journaled by the listeners before it is sent; if the journal does not take it, it is not
  sent (REJECTED, saying why). When the request fails without a definite answer (timeout, lost connection, 5xx,
  Binance's -1006/-1007), the exchange is asked for that client id: found, the order carries on from what the
  exchange says; not found, it stays NEW until the exchange would refuse the request (its timestamp + recvWindow
  passed on the exchange's clock) and is then REJECTED as never placed (``live_reconcile``). It is never sent again.
- **Refusals are sentences.** ``submit`` never raises for an exchange's refusal: the order ends REJECTED with
  ``reject_reason`` in the trader's words (``exchange_errors``). Orders go on the instrument's filters
  (``broker.on_filters``, as paper) and amounts reach ccxt as exact decimal text, never floats; what rounding cannot
  fix (below the minimum quantity or value) is refused here with the instrument's sentence.
- **Commissions as charged.** Fills carry the exchange's commission and its asset exactly (Binance charges a buy in
  the coin): the position is what the account holds, and closing orders (flatten, the kill switch, bracket exits)
  never sell more than that (``closable``).
- **Fills from the user stream** (``live_stream``): a supervised task keeps ``watch_my_trades`` / ``watch_orders``
  running, reconnects with back-off and reconciles after every (re)subscription; ``stream_up`` and
  ``stream_down_since_ms`` say whether it is up; every task's failure goes to ``on_fault``. Trades become fills and
  order states ours in ``live_fills``.
- **Reconciliation** (``live_reconcile``; start, every reconnect, a cancel refused): orders, fills missed while away,
  unknown exchange orders adopted, balances, and each symbol's position against the coins the account holds;
  journaled through ``journal_hook``; a position difference is told to the trader (``on_warning``).
- **Brackets: the stop at the exchange, the take-profit in the terminal** (``live_brackets``).
- **The kill switch** (``cancel_all``) first waits (bounded) for submits still awaiting their answer, then lists the
  open orders *at the exchange* for the symbols and cancels each, ours or not; an order that filled or was canceled
  between the listing and its cancel is not a refusal; one whose answer never came is canceled by its client id;
  every real refusal is a sentence.

Coinbase Advanced Trade and Kraken go through the same code (ccxt's unified fields) but are untested here; their
user streams differ (no ``authenticate`` handshake to wait for: reconciliation then runs right after the watchers
start).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from app.market.instruments import Instruments
from app.models import Fill, MarketEvent, Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Side
from app.trading.broker import (
    CancelReport,
    FillListener,
    LegMove,
    OrderListener,
    fmt_decimal,
    notify,
    on_filters,
    wall_ms,
)
from app.trading.exchange_errors import ErrorKind, classify, explain, is_uncertain
from app.trading.live_brackets import HELD_SUFFIX, TRADER_CANCELED, LiveBrackets, is_held
from app.trading.live_exchange import (
    BINANCE_LIKE,
    ClientSetupError,
    ExOrder,
    ExTrade,
    account_label,
    balances_of,
    instruments_from_markets,
    make_client,
    parse_order,
    spot_markets,
)
from app.trading.live_fills import FILL_GRACE_S, ExchangeUpdates
from app.trading.live_reconcile import NEVER_PLACED, Reconciler
from app.trading.live_records import (
    EXCHANGE_NAMES,
    FaultHook,
    JournalHook,
    LiveAccount,
    LiveBrokerError,
    LiveCounters,
    LiveEndpoints,
    Reconciliation,
    WarningHook,
)
from app.trading.live_stream import BACKOFF_S, STREAM_STABLE_S, UserStream

__all__ = ["BACKOFF_S", "FILL_GRACE_S", "NEVER_PLACED", "STREAM_STABLE_S", "LiveAccount", "LiveBroker",
           "LiveBrokerError", "LiveCounters", "LiveEndpoints", "Reconciliation"]

log = logging.getLogger(__name__)

ZERO = Decimal(0)
RECV_WINDOW_MS = 5_000  # Binance's default: a signed request is refused this long after its timestamp
NOT_JOURNALED = ("not sent: the journal could not record it, and an order the journal does not hold must never "
                 "reach the exchange (see the log)")


def _exact_text(x: Decimal) -> str:
    """An amount for ccxt as plain decimal text: ccxt's binance reads it with ``Decimal(str(x))`` in
    ``amount_to_precision`` / ``price_to_precision``, so the exchange gets exactly our Decimal (a float would lose
    digits past the 15th)."""
    return f"{x:f}"


class LiveBroker(UserStream, Reconciler, ExchangeUpdates):
    mode = "LIVE"

    def __init__(
        self,
        *,
        exchange: str,
        api_key: str,
        secret: str,
        testnet: bool,
        instruments: Instruments,
        endpoints: LiveEndpoints | None = None,
        id_prefix: str,
        clock_ms: Callable[[], int] = wall_ms,
        journal_hook: JournalHook | None = None,
        symbols: Iterable[str] = (),
        price_of: Callable[[str], Decimal | None] | None = None,
        timeout_ms: int = 10_000,
        recv_window_ms: int = RECV_WINDOW_MS,
        start_timeout_s: float | None = None,
        on_fault: FaultHook | None = None,
        on_warning: WarningHook | None = None,
    ) -> None:
        if exchange not in EXCHANGE_NAMES:
            raise LiveBrokerError(f"Live trading does not support the exchange {exchange!r}.")
        if not api_key or not secret:
            raise LiveBrokerError(f"No API key and secret for {EXCHANGE_NAMES[exchange]}: live trading needs both.")
        if not id_prefix or not id_prefix.replace("_", "").replace("-", "").isalnum() or len(id_prefix) > 20:
            raise LiveBrokerError("The order id prefix must be 1-20 letters, digits, '-' or '_'.")
        self.exchange = exchange
        self.testnet = testnet
        self.endpoints = endpoints
        self.instruments = instruments
        self.id_prefix = id_prefix
        self.clock_ms = clock_ms
        self.journal_hook = journal_hook
        self.price_of = price_of
        self.on_fault = on_fault  # (task name, exception): the session connects its Supervisor
        self.on_warning = on_warning  # a sentence the trader must read
        self._key, self._secret, self._timeout_ms = api_key, secret, timeout_ms
        self._recv_window_ms = recv_window_ms
        # Binance refuses a request recvWindow after its timestamp; other exchanges say no such thing: a minute
        self._refused_after_ms = recv_window_ms if exchange in BINANCE_LIKE else 60_000
        self._start_timeout_s = start_timeout_s if start_timeout_s is not None else 3 * timeout_ms / 1000 + 5
        self._kill_wait_s = timeout_ms / 1000  # the kill switch waits this long for submits awaiting their answer
        name = EXCHANGE_NAMES[exchange]
        # The one label every screen and the smoke test show: the network is always named on a real exchange, so
        # real money never reads like a test ("LIVE · Binance MAINNET", "LIVE · Binance testnet").
        network = "" if exchange == "built-in" else (" testnet" if testnet else " MAINNET")
        self.label = f"LIVE · {name}{network}"
        self.account: LiveAccount | None = None
        self.counters = LiveCounters()
        self.version = 0
        self.stream_failures_in_a_row = 0  # user-stream failures since it last stayed up STREAM_STABLE_S
        self._client: Any = None
        self._markets: dict[str, Any] = {}  # our symbol -> ccxt market
        self._symbols: set[str] = {s.upper() for s in symbols}
        self._next_order = 1
        self._orders: dict[str, Order] = {}  # ours and adopted, by our id (= client order id for ours)
        self._open: dict[str, Order] = {}
        self._by_exchange: dict[str, str] = {}  # exchange order id -> our id
        self._notional: dict[str, Decimal] = {}  # Σ qty × price of each order's fills
        self._fill_ids: set[str] = set()
        self._ahead: dict[str, ExOrder] = {}  # order updates waiting for their fills, by our id
        self._orphans: dict[str, list[ExTrade]] = {}  # trades of orders not known yet, by exchange order id
        self._counted: dict[str, Decimal] = {}  # restored orders: filled quantity the journal already holds
        self._never_placed: set[str] = set()  # concluded not placed: a later sighting is an error to report
        self._awaiting: dict[str, asyncio.Event] = {}  # submits waiting for the exchange's answer, set when done
        self._lost: dict[str, int] = {}  # answer lost, unresolved: the latest its request can have been signed
        self._settling: set[str] = set()  # unresolved orders a task asks about again
        self._positions: dict[str, Decimal] = {}
        self._position_gaps: dict[str, Decimal] = {}  # account coins - position, as last reported, per symbol
        self._balances: dict[str, Decimal] = {}  # the exchange's last snapshot plus our fills since
        self._balances_ms = 0  # our clock when that snapshot was asked for: older fills are already in it
        self._order_listeners: list[OrderListener] = []
        self._fill_listeners: list[FillListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._stream_up = False
        self._stream_down_ms: int | None = None
        self._first_sync = asyncio.Event()
        self._reconcile_lock = asyncio.Lock()
        self._closed = False
        self._refusal_kind: dict[str, ErrorKind] = {}  # why the exchange refused an order (bracket legs ask)
        self._brackets = LiveBrackets(self)

    # ------------------------------------------------------------------------------------------------ connection

    async def connect(self) -> LiveAccount:
        """Load the markets (filters into the shared Instruments) and the balance, which proves the keys."""
        name = EXCHANGE_NAMES[self.exchange] + (" testnet" if self.testnet and self.exchange != "built-in" else "")
        try:
            self._client = make_client(
                self.exchange, self._key, self._secret, testnet=self.testnet,
                rest=self.endpoints.rest if self.endpoints else None,
                ws_api=self.endpoints.ws_api if self.endpoints else None, timeout_ms=self._timeout_ms,
                recv_window_ms=self._recv_window_ms)
        except ClientSetupError as exc:
            raise LiveBrokerError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from exc
        try:
            markets = await self._client.load_markets()
            self._markets = spot_markets(markets)
            self._load_instruments(self._symbols)
            asked_ms = self.clock_ms()
            resp = await self._client.fetch_balance()
        except Exception as exc:
            await self._close_client()
            raise LiveBrokerError(f"{name}: {explain(exc)}") from exc
        self._balances, self._balances_ms = balances_of(resp), asked_ms
        self.account = LiveAccount(self.exchange, self.testnet, account_label(self._key, resp), dict(self._balances))
        log.info("live broker connected to %s, account %s", name, self.account.account)
        return self.account

    def _load_instruments(self, symbols: Iterable[str]) -> None:
        wanted = [s for s in symbols if s not in self.instruments.loaded]
        if wanted:
            self.instruments.add(*instruments_from_markets(self.exchange, self._markets, wanted))

    async def start(self) -> None:
        """After ``restore_*``: subscribe to the user stream and reconcile (then again after every reconnect).
        Returns once the first reconciliation has run, with or without the stream (``stream_up`` says which);
        raises LiveBrokerError when it has not run within ``start_timeout_s``."""
        if self._client is None:
            raise LiveBrokerError("The live broker is not connected.")
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="live-user-stream")
            self._supervisor.add_done_callback(self._task_done)
        try:
            await asyncio.wait_for(asyncio.shield(self._first_sync.wait()), self._start_timeout_s)
        except TimeoutError:
            raise LiveBrokerError(
                f"{EXCHANGE_NAMES[self.exchange]} did not let the live broker compare its orders and balances with "
                f"the account within {self._start_timeout_s:g} s (user stream or REST not answering).") from None

    async def aclose(self) -> None:
        self._closed = True
        tasks = [t for t in (self._supervisor, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self._close_client()

    async def _close_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()

    def counters_dict(self) -> dict[str, Any]:
        """For the smoke test's JSON."""
        return {"broker": self.mode, "label": self.label, **dataclasses.asdict(self.counters),
                "open_orders": len(self._open), "stream_up": self.stream_up}

    # ------------------------------------------------------------------------------------------------ protocol

    def add_listener(self, on_order: OrderListener, on_fill: FillListener) -> None:
        self._order_listeners.append(on_order)
        self._fill_listeners.append(on_fill)

    @property
    def orders(self) -> list[Order]:
        return list(self._orders.values())

    def get(self, order_id: str) -> Order | None:
        return self._orders.get(order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open orders at the exchange and the take-profits this terminal holds (NEW, never sent until reached)."""
        return [o for o in self._open.values() if symbol is None or o.symbol == symbol]

    def on_market(self, batch: Iterable[MarketEvent]) -> None:
        """The market's batches (the same the paper broker gets): trades reaching a held take-profit send its exit."""
        self._brackets.on_market(batch)

    @property
    def balances(self) -> dict[str, Decimal]:
        """The exchange's last balance snapshot plus the fills since (free + locked per asset)."""
        return dict(self._balances)

    def set_position(self, symbol: str, qty: Decimal) -> None:
        self._positions[symbol] = Decimal(qty)

    def restore_ids(self, order_ids: Iterable[str] = (), fill_ids: Iterable[str] = ()) -> None:
        """Number new orders after ``order_ids`` (same prefix) and never emit a fill whose id is in ``fill_ids``."""
        self._next_order = max(self._next_order, 1 + max(map(self._number_of, order_ids), default=0))
        self._fill_ids.update(fill_ids)

    def restore_open_orders(self, orders: Iterable[Order]) -> None:
        """The journal's open orders, every one (a market order in flight at the crash may have filled since: the
        reconciliation at ``start`` asks the exchange, it does not guess)."""
        orders = [o for o in orders if o.status.is_open]
        self.restore_ids(o.id for o in orders)
        for o in orders:
            self._orders[o.id] = o
            self._open[o.id] = o
            self._symbols.add(o.symbol)
            if o.exchange_id:
                self._by_exchange[o.exchange_id] = o.id
            if o.filled_qty > 0 and o.avg_price is not None:
                self._notional[o.id] = o.filled_qty * o.avg_price
                self._counted[o.id] = o.filled_qty
        self._brackets.restore(orders)
        if self._markets:
            self._load_instruments(self._symbols)
        self.version += 1

    def restore_bracket_orders(self, orders: Iterable[Order]) -> None:
        """The journal's done bracketed entries and their legs (``Journal.bracket_orders``), before ``start``: the
        reconciliations place the legs a crash left missing (``live_brackets``)."""
        self._brackets.restore_history(orders)

    def _number_of(self, oid: str) -> int:
        oid = oid.removesuffix(HELD_SUFFIX)
        rest = oid[len(self.id_prefix):] if oid.startswith(self.id_prefix) else ""
        return int(rest) if rest.isdigit() else 0

    # ------------------------------------------------------------------------------------------------ submit

    async def submit(self, req: OrderRequest) -> Order:
        if self._markets:
            self._load_instruments([req.symbol])
        req = on_filters(req, self.instruments.get(req.symbol))
        if req.reduce_only or req.origin is OrderOrigin.FLATTEN:
            req = self._capped_to_holding(req)
        now = self.clock_ms()
        order = Order(id=f"{self.id_prefix}{self._next_order}", request=req, status=OrderStatus.NEW,
                      created_ms=now, updated_ms=now)
        self._next_order += 1
        self._orders[order.id] = order
        self._symbols.add(req.symbol)
        reason = self._refusal(req)
        if reason is not None:
            return self._reject(order, reason)
        self._open[order.id] = order
        if self._emit_order(order):  # journaled before it leaves, or it does not leave
            return self._reject(order, NOT_JOURNALED)
        self.counters.orders_sent += 1
        self._awaiting[order.id] = answered = asyncio.Event()
        try:
            try:
                resp = await self._create(order)
            except Exception as exc:
                if is_uncertain(exc) or "BaseError" not in {c.__name__ for c in type(exc).__mro__}:
                    await self._resolve_in_flight(order, exc, self._signing_clock_ms())
                else:
                    self._refusal_kind[order.id] = classify(exc)
                    self._reject(order, explain(exc, asset=self._spend_asset(req)))
                return order
            await self._apply_rest_order(order, resp)
        finally:
            del self._awaiting[order.id]
            answered.set()
        if (attaching := self._brackets.pending(order.id)) is not None:
            await asyncio.shield(attaching)  # an entry done at once: its stop is at the exchange when this returns
        return order

    async def _create(self, order: Order) -> Any:
        req = order.request
        symbol = self._ccxt_symbol(req.symbol)
        params: dict[str, Any] = {"newClientOrderId": order.id} if self.exchange in BINANCE_LIKE else \
            {"clientOrderId": order.id}
        price: str | None = None
        if req.type is OrderType.MARKET:
            kind = "market"
        elif req.type is OrderType.LIMIT:
            assert req.limit_price is not None
            kind, price = "limit", _exact_text(req.limit_price)
        else:  # STOP_MARKET: Binance spot's STOP_LOSS (a market order once the stop price trades)
            assert req.stop_price is not None
            kind = "market"
            params["stopLossPrice"] = _exact_text(req.stop_price)
        return await self._client.create_order(symbol, kind, req.side.value.lower(), _exact_text(req.qty), price,
                                               params)

    def _refusal(self, req: OrderRequest) -> str | None:
        inst = self.instruments.get(req.symbol)
        if self._client is None:
            return "the live broker is not connected to the exchange"
        if req.symbol not in self._markets:
            return f"{EXCHANGE_NAMES[self.exchange]} does not list {req.symbol} for spot trading"
        if req.qty <= 0:
            return (f"quantity {fmt_decimal(req.qty)} {inst.base} is not positive (after rounding down to the lot "
                    f"size {fmt_decimal(inst.lot_size)})")
        if req.type is OrderType.LIMIT and (req.limit_price is None or req.limit_price <= 0):
            return "a limit order needs a positive limit price"
        if req.type is OrderType.STOP_MARKET and (req.stop_price is None or req.stop_price <= 0):
            return "a stop order needs a positive stop price"
        ref = req.limit_price or req.stop_price or (self.price_of(req.symbol) if self.price_of else None)
        return inst.size_problem(req.qty, ref)  # the exchange would refuse it: say so before sending

    def closable(self, symbol: str, side: Side) -> Decimal:
        """How much a closing order on ``side`` may trade, on the lot: the session's position the other way, and
        for a sell never more than the account holds of the coin (a commission taken in it is already gone)."""
        inst = self.instruments.get(symbol)
        pos = self._positions.get(symbol, ZERO)
        room = max(pos if side is Side.SELL else -pos, ZERO)
        if side is Side.SELL and self.account is not None:
            room = min(room, max(self._balances.get(inst.base, ZERO), ZERO))
        return inst.round_qty(room)

    def _capped_to_holding(self, req: OrderRequest) -> OrderRequest:
        """A closing order (flatten, the kill switch, bracket exits) never sells more than is held: the exchange
        would refuse the whole order for a balance short by a commission."""
        room = self.closable(req.symbol, req.side)
        if req.qty <= room:
            return req
        log.info("closing order %s %s %s capped to %s: what the account holds", req.side.value,
                 fmt_decimal(req.qty), req.symbol, fmt_decimal(room))
        return dataclasses.replace(req, qty=room)

    def _spend_asset(self, req: OrderRequest) -> str:
        inst = self.instruments.get(req.symbol)
        return inst.quote if req.side is Side.BUY else inst.base

    def _reject(self, order: Order, reason: str) -> Order:
        self.counters.orders_rejected += 1
        self._close(order, OrderStatus.REJECTED, reason)
        return order

    # ------------------------------------------------------------------------------------------------ cancel

    async def cancel(self, order_id: str) -> bool:
        order = self._open.get(order_id)
        if order is None:
            return False
        if is_held(order):  # never at the exchange: ends here
            return self._brackets.cancel_held(order_id, "canceled by the trader")
        try:
            resp = await self._cancel_at_exchange(order.symbol, order.exchange_id, None if order.exchange_id else
                                                  order.id)
        except Exception as exc:
            self.counters.cancel_refusals += 1
            log.warning("cancel %s refused: %s", order_id, explain(exc))
            if classify(exc) is ErrorKind.UNKNOWN_ORDER:  # filled or canceled meanwhile: ask what it became
                await self.reconcile("cancel refused")
            return False
        self.counters.cancels += 1
        await self._apply_rest_order(order, resp)
        if (order.status is OrderStatus.CANCELED and order.request.origin is OrderOrigin.BRACKET
                and order.request.type is OrderType.STOP_MARKET):  # no reconciliation puts back what he took off
            order.reject_reason = TRADER_CANCELED
            self._emit_order(order)
        return not order.status.is_open

    async def replace_leg(self, order_id: str, req: OrderRequest) -> LegMove:
        """Move a bracket leg to ``req``'s price (``LiveBrackets.replace_leg``); the ``LegMove`` says what happened,
        the old stop put back or not."""
        return await self._brackets.replace_leg(order_id, req)

    async def add_leg(self, req: OrderRequest, sibling_id: str | None = None) -> Order | None:
        """A bracket leg for a position that lacks one (``LiveBrackets.add_leg``), linked to the open leg
        ``sibling_id`` when given: under its parent, so a take-profit cancels that stop before its exit and a stop's
        fills shrink or end that take-profit."""
        sibling = self._open.get(sibling_id) if sibling_id else None
        if sibling is not None and sibling.request.parent_id:
            req = dataclasses.replace(req, parent_id=sibling.request.parent_id)
        return await self._brackets.add_leg(req)

    async def cancel_all(self, symbol: str | None = None) -> CancelReport:
        """Cancel every open order *at the exchange* for ``symbol`` (or every symbol of this session), ours or not;
        each refusal is one sentence."""
        symbols = [symbol] if symbol else sorted(self._symbols | {o.symbol for o in self._open.values()})
        canceled = 0
        refused: list[str] = []
        for tp in [o for sym in symbols for o in self._brackets.held(sym)]:  # first: no exit may start meanwhile
            canceled += self._brackets.cancel_held(tp.id, "canceled with all open orders")
        await self._await_answers(symbols)  # an order in flight now is at the exchange (or known lost) after this
        for sym in symbols:
            try:
                listed = [parse_order(o, sym) for o in await self._client.fetch_open_orders(self._ccxt_symbol(sym))]
            except Exception as exc:
                refused.append(f"{sym}: the open orders could not be listed: {explain(exc)}")
                continue
            for ex_order in listed:
                outcome = await self._cancel_listed(sym, ex_order)
                if outcome is True:
                    canceled += 1
                elif isinstance(outcome, str):
                    refused.append(outcome)
        # ours without an exchange id: the answer never came (still awaited, or lost): canceled by client id
        for order in [o for o in self._open.values() if o.symbol in symbols and not o.exchange_id
                      and not is_held(o)]:
            try:
                resp = await self._cancel_at_exchange(order.symbol, None, order.id)
            except Exception as exc:
                self.counters.cancel_refusals += 1
                why = ("the exchange has not confirmed it and does not know it yet; it may still arrive there "
                       "until its request expires") if classify(exc) is ErrorKind.UNKNOWN_ORDER else explain(exc)
                refused.append(f"{order.id} ({order.request.side.value} {fmt_decimal(order.request.qty)} "
                               f"{order.symbol}): {why}")
                continue
            canceled += 1
            self.counters.cancels += 1
            await self._apply_rest_order(order, resp)
        # ours that the exchange did not list (filled or canceled meanwhile): ask what they became
        if any(o.symbol in symbols for o in self._open.values()):
            with contextlib.suppress(Exception):
                await self.reconcile("cancel all")
        return CancelReport(canceled=canceled, refused=tuple(refused))

    async def _await_answers(self, symbols: Iterable[str]) -> None:
        """Wait (at most ``_kill_wait_s``) for the submits of these symbols still waiting for the exchange's
        answer: until then nobody knows whether, or under which exchange id, their orders rest there."""
        wanted = set(symbols)
        events = [ev for oid, ev in self._awaiting.items() if (o := self._orders.get(oid)) and o.symbol in wanted]
        if not events:
            return
        self.counters.kill_waits += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in events)), self._kill_wait_s)

    async def _cancel_listed(self, sym: str, ex_order: ExOrder) -> bool | str | None:
        """True: canceled (by this request, or by one whose answer was lost: a client retrying a DELETE on a cut
        connection gets "unknown order" for an order it did cancel). A sentence: refused. None: it filled between the
        listing and the cancel, which is no refusal."""
        ours = self._find(ex_order.client_id, ex_order.exchange_id)
        try:
            resp = await self._cancel_at_exchange(sym, ex_order.exchange_id, None)
        except Exception as exc:
            if classify(exc) is ErrorKind.UNKNOWN_ORDER:  # -2011: gone since the listing? ask what it became
                with contextlib.suppress(Exception):
                    raw = await self._client.fetch_order(ex_order.exchange_id, self._ccxt_symbol(sym))
                    if ours is not None:
                        await self._apply_rest_order(ours, raw)
                    status = parse_order(raw, sym).status
                    if status in ("CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"):
                        self.counters.cancels += 1
                        return True
                    if status in ("FILLED", "REJECTED"):
                        return None
            self.counters.cancel_refusals += 1
            name = ours.id if ours else f"exchange order {ex_order.exchange_id}"
            return f"{name} ({ex_order.side.value} {fmt_decimal(ex_order.qty)} {sym}): {explain(exc)}"
        self.counters.cancels += 1
        if ours is not None:
            await self._apply_rest_order(ours, resp)
        return True

    async def _cancel_at_exchange(self, symbol: str, exchange_id: str | None, client_id: str | None) -> Any:
        params: dict[str, Any] = {}
        if exchange_id is None:
            params["origClientOrderId" if self.exchange in BINANCE_LIKE else "clientOrderId"] = client_id
        return await self._client.cancel_order(exchange_id, self._ccxt_symbol(symbol), params)

    # ------------------------------------------------------------------------------------------------ helpers

    def _ccxt_symbol(self, symbol: str) -> str:
        m = self._markets.get(symbol.upper())
        if m is None:
            raise LiveBrokerError(f"{EXCHANGE_NAMES[self.exchange]} does not list {symbol} for spot trading.")
        return m["symbol"]

    def _our_symbol(self, ccxt_symbol: str | None) -> str | None:
        if ccxt_symbol is None:
            return None
        m = self._client.markets.get(ccxt_symbol) if self._client is not None else None
        return f"{m['base']}{m['quote']}".upper() if m else None

    def _summary(self, order: Order, note: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": order.id, "exchange_id": order.exchange_id, "symbol": order.symbol,
                               "side": order.request.side.value, "qty": order.request.qty,
                               "status": order.status.value, "filled_qty": order.filled_qty}
        if note:
            out["note"] = note
        return out

    def _warn(self, sentence: str) -> None:
        log.warning("%s", sentence)
        if self.on_warning is not None:
            try:
                self.on_warning(sentence)
            except Exception:
                log.exception("on_warning failed")

    def _emit_order(self, order: Order) -> int:
        """Tell the listeners (the journal first); returns how many failed."""
        self.version += 1
        failed = notify(self._order_listeners, order, "order")
        self.counters.listener_errors += failed
        try:
            self._brackets.on_order(order)  # after the journal has it: a leg's parent is recorded first
        except Exception:
            self.counters.errors += 1
            log.exception("bracket handling failed on %s", order.id)
        return failed

    def _emit_fill(self, fill: Fill) -> None:
        self.version += 1
        self.counters.listener_errors += notify(self._fill_listeners, fill, "fill")
