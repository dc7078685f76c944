"""LiveBroker: approved orders to a real exchange through ccxt (Binance spot first; the built-in exchange speaks the
same API on loopback), the second implementation of the Broker protocol beside PaperBroker.

What a careful trader can rely on:

- **One order, never two.** Our order id is the exchange's client order id (``newClientOrderId``). The order is
  registered (NEW, journaled by the listeners) before it is sent. When the request fails without a definite answer
  (timeout, lost connection, 5xx), the exchange is asked for that client id before anything is concluded: found, the
  order carries on from what the exchange says; not found (twice, a moment apart), it is REJECTED as never placed;
  the exchange unreachable, it stays NEW and the next reconciliation settles it. It is never sent again.
- **Refusals are sentences.** ``submit`` never raises for an exchange's refusal: the order ends REJECTED with
  ``reject_reason`` in the trader's words (``exchange_errors``). Quantities are rounded down to the lot and limit
  prices to the tick on the trader's side before sending; what rounding cannot fix (below the minimum quantity or
  value) is refused here with the instrument's sentence, before the exchange sees it.
- **Fills from the user stream.** A supervised task keeps ``watch_my_trades`` and ``watch_orders`` running and
  reconnects with back-off; after every (re)subscription it reconciles over REST, so nothing that happened while the
  stream was down is missed. Fills are emitted before the order update they cause; an order update that is ahead of
  the fills seen waits for them (and fetches them over REST if they do not come). Fill ids are
  ``{exchange}:{trade id}``, each emitted once (``restore_ids`` gives the ids the journal already has).
- **Reconciliation** (start, every reconnect, an order in flight whose answer was lost): every open order of ours is
  looked up by client id and its missed fills recovered; exchange open orders for the session's symbols that we do
  not know are *adopted* (origin MANUAL, id ``{exchange}-{exchange order id}``, their fills recovered), so the kill
  switch covers them and the positions include them; balances are compared with what the last snapshot and the fills
  since explain. Each one is journaled through ``journal_hook`` (``Journal.record_reconciliation``).
- **Brackets: the stop at the exchange, the take-profit in the terminal** (``live_brackets``). Binance spot cannot
  hold both legs for the same coins as two plain orders (the first locks them), and only the stop must protect
  while the terminal is closed. When an entry with ``stop_loss_pct`` is done, a STOP_LOSS (market on trigger) for
  the filled quantity is placed at the exchange like any order of ours (client id, journal, reconciliation). The
  take-profit is an open Order held here (id ``…-TP``, a note says so; never looked up at the exchange), journaled
  and restored like any open order; ``on_market`` (the session feeds it the market's batches) sees a trade reach
  it, cancels the stop at the exchange, then sends a market exit; a stop that has already triggered is not
  followed by a second exit. A stop fill shrinks or ends the take-profit; a closed position ends both legs.
- **The kill switch** (``cancel_all``) lists the open orders *at the exchange* for the symbols and cancels each,
  ours or not, and reports every refusal as a sentence.

Coinbase Advanced Trade and Kraken go through the same code (ccxt's unified fields) but are untested here; their
user streams differ (no ``authenticate`` handshake to wait for: reconciliation then runs right after the watchers
start).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from app.market.instruments import Instruments
from app.models import Fill, Liquidity, MarketEvent, Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Side
from app.trading.broker import CancelReport
from app.trading.exchange_errors import ErrorKind, classify, explain, is_uncertain
from app.trading.live_brackets import HELD_SUFFIX, LiveBrackets, is_held
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
    parse_trade,
    spot_markets,
)

log = logging.getLogger(__name__)

Q8 = Decimal("1e-8")
ZERO = Decimal(0)
OrderListener = Callable[[Order], None]
FillListener = Callable[[Fill], None]
# Journal.record_reconciliation(at_ms, exchange, account, trigger, report)
JournalHook = Callable[[int, str, str, str, dict[str, Any]], None]

NEVER_PLACED = "the exchange never received it ({why}); nothing was placed"
LOOKUP_PAUSE_S = 0.5  # between the two lookups of an order whose answer was lost
FILL_GRACE_S = 0.5  # an order update ahead of the fills seen waits this long for them before asking over REST
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
EXCHANGE_NAMES = {"binance": "Binance", "built-in": "built-in exchange", "coinbase": "Coinbase", "kraken": "Kraken"}
_FINAL = {"FILLED": OrderStatus.FILLED, "CANCELED": OrderStatus.CANCELED, "EXPIRED": OrderStatus.CANCELED,
          "EXPIRED_IN_MATCH": OrderStatus.CANCELED, "REJECTED": OrderStatus.REJECTED}


class LiveBrokerError(Exception):
    """The live broker cannot trade (keys rejected, no network, unknown exchange ...); str() is one sentence."""


@dataclass(frozen=True)
class LiveEndpoints:
    """The built-in exchange on loopback: ``rest`` = "http://127.0.0.1:PORT", ``ws_api`` = ".../ws-api/v3"."""

    rest: str
    ws_api: str


@dataclass(frozen=True)
class LiveAccount:
    exchange: str
    testnet: bool
    account: str  # masked key (+ uid)
    balances: dict[str, Decimal]  # free + locked per asset, non-zero only


@dataclass
class Reconciliation:
    """What one comparison of our orders with the exchange account found."""

    trigger: str
    at_ms: int
    orders_updated: list[dict[str, Any]] = field(default_factory=list)
    fills_recovered: list[dict[str, Any]] = field(default_factory=list)
    unknown_orders: list[dict[str, Any]] = field(default_factory=list)  # adopted, origin MANUAL
    balance_differences: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"orders_updated": self.orders_updated, "fills_recovered": self.fills_recovered,
                "unknown_orders": self.unknown_orders, "balance_differences": self.balance_differences,
                "errors": self.errors}

    @property
    def clean(self) -> bool:
        return not (self.orders_updated or self.fills_recovered or self.unknown_orders or self.balance_differences
                    or self.errors)


@dataclass
class LiveCounters:
    orders_sent: int = 0
    orders_rejected: int = 0  # by the exchange or before sending
    fills: int = 0
    cancels: int = 0
    cancel_refusals: int = 0
    reconciliations: int = 0
    fills_recovered: int = 0
    orders_adopted: int = 0
    in_flight_lookups: int = 0  # submits whose answer was lost and were looked up by client id
    stream_reconnects: int = 0
    errors: int = 0
    listener_errors: int = 0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _fmt(x: Decimal) -> str:
    return f"{x.normalize():f}"


class LiveBroker:
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
        clock_ms: Callable[[], int] = _wall_ms,
        journal_hook: JournalHook | None = None,
        symbols: Iterable[str] = (),
        price_of: Callable[[str], Decimal | None] | None = None,
        timeout_ms: int = 10_000,
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
        self._key, self._secret, self._timeout_ms = api_key, secret, timeout_ms
        name = EXCHANGE_NAMES[exchange]
        self.label = f"LIVE · {name}" + (" testnet" if testnet and exchange != "built-in" else "")
        self.account: LiveAccount | None = None
        self.counters = LiveCounters()
        self.version = 0
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
        self._positions: dict[str, Decimal] = {}
        self._balances: dict[str, Decimal] = {}  # the exchange's last snapshot plus our fills since
        self._balances_ms = 0  # our clock when that snapshot was asked for: older fills are already in it
        self._order_listeners: list[OrderListener] = []
        self._fill_listeners: list[FillListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None
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
                ws_api=self.endpoints.ws_api if self.endpoints else None, timeout_ms=self._timeout_ms)
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
        Returns once the first reconciliation has run."""
        if self._client is None:
            raise LiveBrokerError("The live broker is not connected.")
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="live-user-stream")
        await self._first_sync.wait()

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
                "open_orders": len(self._open)}

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

    def _number_of(self, oid: str) -> int:
        oid = oid.removesuffix(HELD_SUFFIX)
        rest = oid[len(self.id_prefix):] if oid.startswith(self.id_prefix) else ""
        return int(rest) if rest.isdigit() else 0

    # ------------------------------------------------------------------------------------------------ submit

    async def submit(self, req: OrderRequest) -> Order:
        if self._markets:
            self._load_instruments([req.symbol])
        req = self._on_grid(req)
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
        self._emit_order(order)  # journaled before it leaves
        self.counters.orders_sent += 1
        try:
            resp = await self._create(order)
        except Exception as exc:
            if is_uncertain(exc) or "BaseError" not in {c.__name__ for c in type(exc).__mro__}:
                await self._resolve_in_flight(order, exc)
            else:
                self._refusal_kind[order.id] = classify(exc)
                self._reject(order, explain(exc, asset=self._spend_asset(req)))
            return order
        await self._apply_rest_order(order, resp)
        if (attaching := self._brackets.pending(order.id)) is not None:
            await asyncio.shield(attaching)  # an entry done at once: its stop is at the exchange when this returns
        return order

    async def _create(self, order: Order) -> Any:
        req = order.request
        symbol = self._ccxt_symbol(req.symbol)
        params: dict[str, Any] = {"newClientOrderId": order.id} if self.exchange in BINANCE_LIKE else \
            {"clientOrderId": order.id}
        price: float | None = None
        if req.type is OrderType.MARKET:
            kind = "market"
        elif req.type is OrderType.LIMIT:
            kind, price = "limit", float(req.limit_price)  # type: ignore[arg-type]
        else:  # STOP_MARKET: Binance spot's STOP_LOSS (a market order once the stop price trades)
            kind = "market"
            params["stopLossPrice"] = str(req.stop_price)
        return await self._client.create_order(symbol, kind, req.side.value.lower(), float(req.qty), price, params)

    def _on_grid(self, req: OrderRequest) -> OrderRequest:
        """Quantity down to the lot, a limit price to the tick on the trader's side, a stop to the nearest tick."""
        inst = self.instruments.get(req.symbol)
        changes: dict[str, Any] = {}
        if req.qty > 0 and not inst.on_lot(req.qty):
            changes["qty"] = inst.round_qty(req.qty)
        if req.limit_price is not None and req.limit_price > 0 and not inst.on_tick(req.limit_price):
            changes["limit_price"] = inst.round_price(req.limit_price,
                                                      ROUND_FLOOR if req.side is Side.BUY else ROUND_CEILING)
        if req.stop_price is not None and req.stop_price > 0 and not inst.on_tick(req.stop_price):
            changes["stop_price"] = inst.round_price(req.stop_price, ROUND_HALF_EVEN)
        return dataclasses.replace(req, **changes) if changes else req

    def _refusal(self, req: OrderRequest) -> str | None:
        inst = self.instruments.get(req.symbol)
        if self._client is None:
            return "the live broker is not connected to the exchange"
        if req.symbol not in self._markets:
            return f"{EXCHANGE_NAMES[self.exchange]} does not list {req.symbol} for spot trading"
        if req.qty <= 0:
            return (f"quantity {_fmt(req.qty)} {inst.base} is not positive (after rounding down to the lot size "
                    f"{_fmt(inst.lot_size)})")
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
        log.info("closing order %s %s %s capped to %s: what the account holds", req.side.value, _fmt(req.qty),
                 req.symbol, _fmt(room))
        return dataclasses.replace(req, qty=room)

    def _spend_asset(self, req: OrderRequest) -> str:
        inst = self.instruments.get(req.symbol)
        return inst.quote if req.side is Side.BUY else inst.base

    def _reject(self, order: Order, reason: str) -> Order:
        self.counters.orders_rejected += 1
        self._close(order, OrderStatus.REJECTED, reason)
        return order

    async def _resolve_in_flight(self, order: Order, exc: BaseException) -> None:
        """The request may have reached the exchange: ask for the client id, never send again."""
        self.counters.in_flight_lookups += 1
        why = explain(exc)
        log.warning("order %s: no answer from the exchange (%s); looking it up by client id", order.id, why)
        rec = Reconciliation("in-flight", self.clock_ms())
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(LOOKUP_PAUSE_S)
            try:
                found = await self._fetch_by_client_id(order)
            except Exception as lookup_exc:
                if classify(lookup_exc) is ErrorKind.UNKNOWN_ORDER:
                    continue
                rec.errors.append(f"order {order.id}: {explain(lookup_exc)}")
                order.reject_reason = (f"sent, but the exchange's answer was lost ({why}) and it cannot be asked "
                                       "now; the next reconciliation will settle it")
                self._emit_order(order)
                self._finish(rec)
                self._spawn(self._settle_later(order), f"live-settle-{order.id}")
                return
            await self._apply_rest_order(order, found, rec)
            rec.orders_updated.append(self._summary(order, note="found by client id after a lost answer"))
            self._finish(rec)
            return
        self._never_placed.add(order.id)
        rec.orders_updated.append(self._summary(order, note="not at the exchange: never placed"))
        self._reject(order, NEVER_PLACED.format(why=why.rstrip(".")))
        self._finish(rec)

    async def _settle_later(self, order: Order) -> None:
        for delay in BACKOFF_S * 6:
            await asyncio.sleep(delay)
            if not order.status.is_open or order.exchange_id:
                return
            with contextlib.suppress(Exception):
                await self.reconcile("unsettled order")
                return

    async def _fetch_by_client_id(self, order: Order) -> Any:
        symbol = self._ccxt_symbol(order.symbol)
        if order.exchange_id:
            return await self._client.fetch_order(order.exchange_id, symbol)
        key = "origClientOrderId" if self.exchange in BINANCE_LIKE else "clientOrderId"
        return await self._client.fetch_order(None, symbol, {key: order.id})

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
        return not order.status.is_open

    async def cancel_all(self, symbol: str | None = None) -> CancelReport:
        """Cancel every open order *at the exchange* for ``symbol`` (or every symbol of this session), ours or not;
        each refusal is one sentence."""
        symbols = [symbol] if symbol else sorted(self._symbols | {o.symbol for o in self._open.values()})
        canceled = 0
        refused: list[str] = []
        for tp in [o for sym in symbols for o in self._brackets.held(sym)]:  # first: no exit may start meanwhile
            canceled += self._brackets.cancel_held(tp.id, "canceled with all open orders")
        for sym in symbols:
            try:
                listed = [parse_order(o, sym) for o in await self._client.fetch_open_orders(self._ccxt_symbol(sym))]
            except Exception as exc:
                refused.append(f"{sym}: the open orders could not be listed: {explain(exc)}")
                continue
            for ex_order in listed:
                ours = self._find(ex_order.client_id, ex_order.exchange_id)
                try:
                    resp = await self._cancel_at_exchange(sym, ex_order.exchange_id, None)
                except Exception as exc:
                    self.counters.cancel_refusals += 1
                    name = ours.id if ours else f"exchange order {ex_order.exchange_id}"
                    refused.append(f"{name} ({ex_order.side.value} {_fmt(ex_order.qty)} {sym}): {explain(exc)}")
                    continue
                canceled += 1
                self.counters.cancels += 1
                if ours is not None:
                    await self._apply_rest_order(ours, resp)
        # ours that the exchange did not list (filled or canceled meanwhile): ask what they became
        if any(o.symbol in symbols for o in self._open.values()):
            with contextlib.suppress(Exception):
                await self.reconcile("cancel all")
        return CancelReport(canceled=canceled, refused=tuple(refused))

    async def _cancel_at_exchange(self, symbol: str, exchange_id: str | None, client_id: str | None) -> Any:
        params: dict[str, Any] = {}
        if exchange_id is None:
            params["origClientOrderId" if self.exchange in BINANCE_LIKE else "clientOrderId"] = client_id
        return await self._client.cancel_order(exchange_id, self._ccxt_symbol(symbol), params)

    # ------------------------------------------------------------------------------------------------ reconcile

    async def reconcile(self, trigger: str = "manual") -> Reconciliation:
        """Compare with the exchange: our open orders by client id (missed fills recovered, final states taken),
        exchange open orders we do not know (adopted), balances. Journaled through ``journal_hook``."""
        async with self._reconcile_lock:
            rec = Reconciliation(trigger, self.clock_ms())
            for order in list(self._open.values()):
                if not is_held(order):  # a take-profit held here was never sent: nothing to ask the exchange
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
            self._finish(rec)
            return rec

    async def _reconcile_order(self, order: Order, rec: Reconciliation) -> None:
        before = (order.status, order.filled_qty, order.exchange_id)
        try:
            found = await self._fetch_by_client_id(order)
        except Exception as exc:
            if classify(exc) is ErrorKind.UNKNOWN_ORDER:
                self._never_placed.add(order.id)
                self._reject(order, "the exchange has no order with this id: it never arrived there")
                rec.orders_updated.append(self._summary(order, note="not at the exchange: never placed"))
            else:
                rec.errors.append(f"order {order.id}: {explain(exc)}")
            return
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
                    ex_order.side.value, _fmt(ex_order.qty), ex_order.symbol)
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

    # ------------------------------------------------------------------------------------------------ user stream

    async def _supervise(self) -> None:
        attempt = 0
        first = True
        while not self._closed:
            watchers: list[asyncio.Task[None]] = []
            try:
                if self.exchange in BINANCE_LIKE:
                    await self._client.authenticate()  # the subscription is acknowledged: events flow from here
                watchers = [asyncio.create_task(self._watch_trades(), name="live-watch-trades"),
                            asyncio.create_task(self._watch_orders(), name="live-watch-orders")]
                await asyncio.sleep(0)
                await self.reconcile("start" if first else "reconnect")
                attempt = 0
                first = False
                self._first_sync.set()
                done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    t.result()  # re-raise what ended it
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                self.counters.stream_reconnects += 1
                log.warning("user stream interrupted (%s); reconnecting", explain(exc))
                if first and not self._first_sync.is_set():  # no stream yet: start still owes a reconciliation
                    with contextlib.suppress(Exception):
                        await self.reconcile("start (no user stream)")
                    self._first_sync.set()
                    first = False
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
            finally:
                for t in watchers:
                    t.cancel()
                for t in watchers:
                    with contextlib.suppress(BaseException):
                        await t

    async def _watch_trades(self) -> None:
        while True:
            trades = await self._client.watch_my_trades()
            for raw in trades:
                try:
                    sym = self._our_symbol(raw.get("symbol"))
                    if sym is not None:
                        self._apply_trade(parse_trade(raw, sym), None)
                except Exception:
                    self.counters.errors += 1
                    log.exception("a trade from the user stream could not be applied: %r", raw)

    async def _watch_orders(self) -> None:
        while True:
            orders = await self._client.watch_orders()
            for raw in orders:
                try:
                    sym = self._our_symbol(raw.get("symbol"))
                    if sym is not None:
                        await self._on_stream_order(parse_order(raw, sym))
                except Exception:
                    self.counters.errors += 1
                    log.exception("an order update from the user stream could not be applied: %r", raw)

    async def _on_stream_order(self, ex_order: ExOrder) -> None:
        order = self._find(ex_order.client_id, ex_order.exchange_id)
        if order is None:
            if ex_order.symbol in self._symbols:
                await self._adopt(ex_order, None)
            return
        self._apply_state(order, ex_order)

    # ------------------------------------------------------------------------------------------------ applying

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
        """A restored order's earliest trades, up to the filled quantity the journal holds, are in the journal
        already: never emitted again, even when ``restore_ids`` was not given their fill ids."""
        counted = self._counted.pop(order.id, None)
        if counted is None:
            return
        done = ZERO
        for t in trades:
            fid = f"{self.exchange}:{t.trade_id}"
            if fid not in self._fill_ids:
                if done + t.qty > counted:
                    break
                self._fill_ids.add(fid)
            done += t.qty
        if done != counted:
            self.counters.errors += 1
            log.error("order %s: the journal holds %s filled, the exchange's first trades %s", order.id, counted,
                      done)

    def _apply_trade(self, t: ExTrade, rec: Reconciliation | None, *, recovered: bool = False) -> None:
        fid = f"{self.exchange}:{t.trade_id}"
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
                f"the exchange filled {_fmt(order.filled_qty)} of {_fmt(order.request.qty)}; the rest expired")
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
        order.status = status
        order.updated_ms = self.clock_ms()
        self._emit_order(order)

    def _close(self, order: Order, status: OrderStatus, reason: str | None) -> None:
        order.status = status
        if reason is not None:
            order.reject_reason = reason
        order.updated_ms = self.clock_ms()
        self._open.pop(order.id, None)
        self._emit_order(order)

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

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit_order(self, order: Order) -> None:
        self.version += 1
        for cb in list(self._order_listeners):
            try:
                cb(order)
            except Exception:
                self.counters.listener_errors += 1
                log.exception("order listener failed on %s", order.id)
        try:
            self._brackets.on_order(order)  # after the journal has it: a leg's parent is recorded first
        except Exception:
            self.counters.errors += 1
            log.exception("bracket handling failed on %s", order.id)

    def _emit_fill(self, fill: Fill) -> None:
        self.version += 1
        for cb in list(self._fill_listeners):
            try:
                cb(fill)
            except Exception:
                self.counters.listener_errors += 1
                log.exception("fill listener failed on %s", fill.id)
