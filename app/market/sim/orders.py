"""Order matching for the built-in exchange: accounts, Binance spot symbol rules, and orders filled against the
market's own book and trades. Pure (no I/O, no clock of its own, every amount Decimal); the trading API
(order_api.py) parses requests into calls here and serialises what comes back.

The fill model is PaperBroker's (app/trading/broker.py), so a session trades the same on paper and "live" on
loopback:

- MARKET orders walk the book's levels (``BookView.levels``) as taker; what the book cannot fill ends the order
  EXPIRED, as Binance does. The book is shared market data and is not consumed. A MARKET order by
  ``quoteOrderQty`` spends up to that much quote and is sized by what it bought. As Binance, a MARKET order the
  free balance could not fill *completely* is refused (-2010) even if the book would fill only part: a sell needs
  its whole quantity, a buy by quantity the book's prices for it (any rest the book lacks at its last level's
  price), a buy by ``quoteOrderQty`` that quote.
- LIMIT orders take what is marketable at their price as taker; a GTC remainder rests and fills as maker only when
  a market trade goes strictly *through* its price (a trade at the price does not: our place in the queue is
  unknown), shared among resting orders by price then time. IOC / FOK remainders expire; LIMIT_MAKER that would
  take is rejected.
- STOP_LOSS orders (Binance spot's stop-market: ``quantity`` and ``stopPrice``, no price, no timeInForce) rest
  untriggered (NEW, not working; a sell locks its base, a buy ``qty × stopPrice`` of the quote).
  The stop price obeys PRICE_FILTER and, with the quantity, NOTIONAL; a stop the last market trade has already
  reached is refused (-2010 "Stop price would trigger immediately.", as Binance). A market trade at or through the
  stop (sell: price <= stop; buy: price >= stop) triggers it, before any resting limit fills on that trade; it then
  executes like a MARKET order against the book (what the book cannot fill expires).
- Commission is charged in the asset received, as Binance spot charges an account that does not pay in BNB: a
  BUY pays it in the base asset (the account receives ``qty − commission``), a SELL in the quote (0.1 % taker and
  maker by default, on the fill's quantity for a buy and its notional for a sell). So a resting buy locks just
  ``qty × price`` of the quote, and a sell its base quantity.

Every change is reported to the listeners as ``(api_key, event)`` with Binance's user-data-stream payloads:
``executionReport`` for each order change (a fill before the account update it causes) and
``outboundAccountPosition`` with the assets whose balance changed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

ZERO = Decimal(0)
Q8 = Decimal("1e-8")
DEFAULT_FEE = Decimal("0.001")
BOOK_DEPTH = 1000  # levels asked of the book for one order; the synthetic books hold 20 a side
OPEN = ("NEW", "PARTIALLY_FILLED")
SIDES = ("BUY", "SELL")
TYPES = ("MARKET", "LIMIT", "LIMIT_MAKER", "STOP_LOSS")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")

Listener = Callable[[str, dict[str, Any]], None]
Plan = list[tuple[Decimal, Decimal]]  # (price, qty) to take from the book, best first


class BookView(Protocol):
    """The market's current book. ``side`` is ``"asks"`` or ``"bids"``; levels come best first as (price, qty)."""

    def levels(self, symbol: str, side: str, depth: int) -> list[tuple[Decimal, Decimal]]: ...


class EngineError(Exception):
    """A refusal in Binance's terms: ``code`` and ``msg`` go to the client as they are, with HTTP ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status


def insufficient_balance() -> EngineError:
    return EngineError(-2010, "Account has insufficient balance for requested action.")


def filter_failure(name: str) -> EngineError:
    return EngineError(-1013, f"Filter failure: {name}")


def fmt(x: Decimal) -> str:
    """Binance writes amounts with 8 decimals."""
    return f"{x.quantize(Q8, ROUND_HALF_EVEN):f}"


@dataclass(frozen=True, slots=True)
class SymbolRules:
    symbol: str
    base: str
    quote: str
    tick: Decimal
    min_price: Decimal
    max_price: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    min_notional_market: bool  # NOTIONAL's applyMinToMarket

    @classmethod
    def from_symbol_info(cls, info: Mapping[str, Any]) -> SymbolRules:
        """From an ``/api/v3/exchangeInfo`` symbol entry (PRICE_FILTER, LOT_SIZE, NOTIONAL or MIN_NOTIONAL)."""
        filters = {f["filterType"]: f for f in info.get("filters", [])}
        price = filters.get("PRICE_FILTER", {})
        lot = filters.get("LOT_SIZE", {})
        notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
        step = Decimal(lot.get("stepSize", "0.00000001"))
        return cls(
            symbol=info["symbol"], base=info["baseAsset"], quote=info["quoteAsset"],
            tick=Decimal(price.get("tickSize", "0.00000001")),
            min_price=Decimal(price.get("minPrice", "0")), max_price=Decimal(price.get("maxPrice", "0")),
            step=step, min_qty=Decimal(lot.get("minQty", step)), max_qty=Decimal(lot.get("maxQty", "0")),
            min_notional=Decimal(notional.get("minNotional", "0")),
            min_notional_market=bool(notional.get("applyMinToMarket", notional.get("applyToMarket", True))),
        )

    def check_price(self, price: Decimal) -> None:
        if (price < self.min_price or (self.max_price > 0 and price > self.max_price)
                or (self.tick > 0 and price % self.tick != 0)):
            raise filter_failure("PRICE_FILTER")

    def check_qty(self, qty: Decimal) -> None:
        if qty < self.min_qty or (self.max_qty > 0 and qty > self.max_qty) or (self.step > 0 and qty % self.step):
            raise filter_failure("LOT_SIZE")

    def floor_qty(self, qty: Decimal) -> Decimal:
        return (qty / self.step).to_integral_value(ROUND_DOWN) * self.step if self.step > 0 else qty


@dataclass(slots=True)
class Balance:
    free: Decimal = ZERO
    locked: Decimal = ZERO


@dataclass(slots=True)
class EngineOrder:
    key: str
    order_id: int
    client_id: str
    symbol: str
    side: str
    type: str
    tif: str
    qty: Decimal  # 0 for a MARKET order by quoteOrderQty until it has filled
    price: Decimal  # 0 for MARKET
    quote_qty: Decimal  # origQuoteOrderQty
    time: int
    status: str = "NEW"
    executed: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_time: int = 0
    working: bool = False
    lock_left: Decimal = ZERO  # what this order still holds locked (quote for a buy, base for a sell)
    stop_price: Decimal = ZERO  # STOP_LOSS only
    cancel_id: str = ""  # the client id of the request that canceled it (Binance's "c" on CANCELED)
    fills: list[EngineFill] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status in OPEN

    @property
    def left(self) -> Decimal:
        return self.qty - self.executed


@dataclass(frozen=True, slots=True)
class EngineFill:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    maker: bool

    @property
    def quote_qty(self) -> Decimal:
        return self.price * self.qty


@dataclass
class _Account:
    balances: dict[str, Balance] = field(default_factory=dict)
    orders: dict[int, EngineOrder] = field(default_factory=dict)
    by_client: dict[tuple[str, str], EngineOrder] = field(default_factory=dict)  # (symbol, client id) -> latest
    trades: list[EngineFill] = field(default_factory=list)

    def bal(self, asset: str) -> Balance:
        return self.balances.setdefault(asset, Balance())


class OrderEngine:
    def __init__(self, rules: Iterable[SymbolRules], book: BookView, clock_ms: Callable[[], int],
                 taker_fee: Decimal = DEFAULT_FEE, maker_fee: Decimal = DEFAULT_FEE) -> None:
        self.rules = {r.symbol: r for r in rules}
        self.book = book
        self.clock_ms = clock_ms
        self.taker_fee, self.maker_fee = taker_fee, maker_fee
        self._accounts: dict[str, _Account] = {}
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._cancel_ids = itertools.count(1)
        self._listeners: list[Listener] = []
        self._resting: dict[str, list[EngineOrder]] = {}  # symbol -> resting orders in arrival order
        self._stops: dict[str, list[EngineOrder]] = {}  # symbol -> untriggered STOP_LOSS orders in arrival order
        self._last: dict[str, Decimal] = {}  # symbol -> last market trade price (a stop must not trigger at once)

    # -- accounts ---------------------------------------------------------------------------------------

    def open_account(self, key: str, balances: Mapping[str, Decimal]) -> None:
        account = self._accounts.setdefault(key, _Account())
        for asset, amount in balances.items():
            account.bal(asset.upper()).free = Decimal(amount)

    def has_account(self, key: str) -> bool:
        return key in self._accounts

    def balances(self, key: str) -> dict[str, Balance]:
        return dict(self._account(key).balances)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _account(self, key: str) -> _Account:
        account = self._accounts.get(key)
        if account is None:
            raise EngineError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return account

    def symbol_rules(self, symbol: str) -> SymbolRules:
        rules = self.rules.get(symbol)
        if rules is None:
            raise EngineError(-1121, "Invalid symbol.")
        return rules

    # -- placing ----------------------------------------------------------------------------------------

    def place(self, key: str, *, symbol: str, side: str, type: str, quantity: Decimal | None = None,
              quote_qty: Decimal | None = None, price: Decimal | None = None, tif: str | None = None,
              client_id: str | None = None, stop_price: Decimal | None = None) -> EngineOrder:
        """Validate, then match; returns the order as it stands after matching (its fills in ``fills``)."""
        self.validate(key, symbol=symbol, side=side, type=type, quantity=quantity, quote_qty=quote_qty, price=price,
                      tif=tif, stop_price=stop_price)
        account, rules = self._account(key), self.rules[symbol]
        if client_id is not None:
            previous = account.by_client.get((symbol, client_id))
            if previous is not None and previous.open:
                raise EngineError(-2010, "Duplicate order sent.")
        if type == "STOP_LOSS":
            order, plan = self._new_stop(account, key, rules, side, quantity, quote_qty, price, tif, stop_price)
        elif type == "MARKET":
            order, plan = self._new_market(account, key, rules, side, quantity, quote_qty, price, tif)
        else:
            order, plan = self._new_limit(account, key, rules, side, type, quantity, quote_qty, price, tif)
        order.client_id = client_id or f"sim-{order.order_id}"
        account.orders[order.order_id] = order
        account.by_client[(symbol, order.client_id)] = order
        self._emit_order(order, "NEW")
        if order.lock_left:
            self._emit_balances(key, rules, order.side)
        if order.type == "STOP_LOSS":  # waits for a market trade to reach its stop
            self._stops.setdefault(symbol, []).append(order)
            return order
        for fill_price, fill_qty in plan:
            self._fill(account, order, rules, fill_price, fill_qty, maker=False)
        if order.left > 0 and order.tif == "GTC" and order.type != "MARKET":
            order.working = True
            self._resting.setdefault(symbol, []).append(order)
        elif order.left > 0 or order.executed == 0:
            self._close(order, rules, "EXPIRED")  # what the book could not fill at once
        return order

    def validate(self, key: str, *, symbol: str, side: str, type: str, quantity: Decimal | None = None,
                 quote_qty: Decimal | None = None, price: Decimal | None = None, tif: str | None = None,
                 stop_price: Decimal | None = None) -> None:
        """What Binance checks of an order before matching (``order/test`` too): the account, the symbol, the
        parameters its type needs or refuses, and the symbol's filters. Balances and the book's state are
        checked when the order is placed."""
        self._account(key)
        rules = self.symbol_rules(symbol)
        if side not in SIDES:
            raise EngineError(-1117, "Invalid side.")
        if type not in TYPES:
            raise EngineError(-1116, "Invalid orderType.")
        if type != "STOP_LOSS" and stop_price is not None:
            raise EngineError(-1106, "Parameter 'stopPrice' sent when not required.")
        if type == "MARKET":
            self._check_market(rules, side, quantity, quote_qty, price, tif)
        elif type == "STOP_LOSS":
            _check_stop(rules, quantity, quote_qty, price, tif, stop_price)
        else:
            _check_limit(rules, type, quantity, quote_qty, price, tif)

    def _check_market(self, rules: SymbolRules, side: str, quantity: Decimal | None, quote_qty: Decimal | None,
                      price: Decimal | None, tif: str | None) -> None:
        if price is not None or tif is not None:
            raise EngineError(-1106, f"Parameter '{'price' if price is not None else 'timeInForce'}' sent when "
                                     "not required.")
        if quantity is None and quote_qty is None:
            raise EngineError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty!")
        if quantity is not None and quote_qty is not None:
            raise EngineError(-1014, "Unsupported order combination.")
        if quantity is not None:
            rules.check_qty(quantity)
            best = self.book.levels(rules.symbol, "asks" if side == "BUY" else "bids", 1)
            if rules.min_notional_market and best and quantity * best[0][0] < rules.min_notional:
                raise filter_failure("NOTIONAL")
        else:
            assert quote_qty is not None
            if quote_qty <= 0:
                raise EngineError(-1013, "Invalid quoteOrderQty.")
            if rules.min_notional_market and quote_qty < rules.min_notional:
                raise filter_failure("NOTIONAL")

    def _new_market(self, account: _Account, key: str, rules: SymbolRules, side: str, quantity: Decimal | None,
                    quote_qty: Decimal | None, price: Decimal | None, tif: str | None) -> tuple[EngineOrder, Plan]:
        levels = self.book.levels(rules.symbol, "asks" if side == "BUY" else "bids", BOOK_DEPTH)
        plan = _walk(levels, quantity, quote_qty if quantity is None else None, None, rules)
        self._check_funds(account, rules, side, *self._market_needs(rules, side, plan, quantity, quote_qty))
        now = self.clock_ms()
        # A quote-sized order's size is what its quote buys on the book (Binance reports that as origQty).
        size = quantity if quantity is not None else sum((q for _, q in plan), ZERO)
        return EngineOrder(key=key, order_id=next(self._order_ids), client_id="", symbol=rules.symbol, side=side,
                           type="MARKET", tif="GTC", qty=size, price=ZERO, quote_qty=quote_qty or ZERO,
                           time=now, update_time=now), plan

    def _new_limit(self, account: _Account, key: str, rules: SymbolRules, side: str, type: str,
                   quantity: Decimal | None, quote_qty: Decimal | None, price: Decimal | None,
                   tif: str | None) -> tuple[EngineOrder, Plan]:
        assert quantity is not None and price is not None  # validate() saw to it
        opposite = self.book.levels(rules.symbol, "asks" if side == "BUY" else "bids", BOOK_DEPTH)
        plan = _walk(opposite, quantity, None, price if side == "BUY" else -price, rules)
        if type == "LIMIT_MAKER" and plan:
            raise EngineError(-2010, "Order would immediately match and take.")
        if tif == "FOK" and sum((q for _, q in plan), ZERO) < quantity:
            plan = []  # nothing fills; the order expires below
        lock = quantity if side == "SELL" else quantity * price
        self._check_funds(account, rules, side, quantity, lock)
        now = self.clock_ms()
        order = EngineOrder(key=key, order_id=next(self._order_ids), client_id="", symbol=rules.symbol, side=side,
                            type=type, tif=tif or "GTC", qty=quantity, price=price, quote_qty=ZERO, time=now,
                            update_time=now, lock_left=lock)
        held = account.bal(rules.base if side == "SELL" else rules.quote)
        held.free -= lock
        held.locked += lock
        return order, plan

    def _new_stop(self, account: _Account, key: str, rules: SymbolRules, side: str, quantity: Decimal | None,
                  quote_qty: Decimal | None, price: Decimal | None, tif: str | None,
                  stop_price: Decimal | None) -> tuple[EngineOrder, Plan]:
        assert quantity is not None and stop_price is not None  # validate() saw to it
        last = self._last.get(rules.symbol)
        if last is not None and (last <= stop_price if side == "SELL" else last >= stop_price):
            raise EngineError(-2010, "Stop price would trigger immediately.")
        lock = quantity if side == "SELL" else quantity * stop_price
        self._check_funds(account, rules, side, quantity, lock)
        now = self.clock_ms()
        order = EngineOrder(key=key, order_id=next(self._order_ids), client_id="", symbol=rules.symbol, side=side,
                            type="STOP_LOSS", tif="GTC", qty=quantity, price=ZERO, quote_qty=ZERO, time=now,
                            update_time=now, lock_left=lock, stop_price=stop_price)
        held = account.bal(rules.base if side == "SELL" else rules.quote)
        held.free -= lock
        held.locked += lock
        return order, []

    def _market_needs(self, rules: SymbolRules, side: str, plan: Plan, quantity: Decimal | None,
                      quote_qty: Decimal | None) -> tuple[Decimal, Decimal]:
        """(base, quote) a MARKET order needs free to be filled completely: Binance refuses it (-2010) when the
        balance is short, even if the book could fill only part. A sell by quantity needs that quantity; a buy by
        ``quoteOrderQty`` that quote. A buy by quantity needs what the book's levels cost, and any rest the book
        cannot fill priced at the last level it reaches (or the last market trade); a sell by ``quoteOrderQty``
        likewise the base its quote takes from the bids, the rest at the last level's price."""
        filled = sum((q for _, q in plan), ZERO)
        notional = sum((p * q for p, q in plan), ZERO)
        last = plan[-1][0] if plan else self._last.get(rules.symbol, ZERO)
        if side == "SELL":
            if quantity is not None:
                return quantity, ZERO
            assert quote_qty is not None
            rest = quote_qty - notional
            return filled + (rules.floor_qty(rest / last) if last > 0 and rest > 0 else ZERO), ZERO
        if quote_qty is not None:
            return ZERO, quote_qty
        assert quantity is not None
        return ZERO, notional + (quantity - filled) * last

    @staticmethod
    def _check_funds(account: _Account, rules: SymbolRules, side: str, base_qty: Decimal, quote_cost: Decimal) -> None:
        if side == "SELL" and account.bal(rules.base).free < base_qty:
            raise insufficient_balance()
        if side == "BUY" and account.bal(rules.quote).free < quote_cost:
            raise insufficient_balance()

    # -- matching ---------------------------------------------------------------------------------------

    def on_trade(self, symbol: str, price: Decimal, qty: Decimal) -> None:
        """A market trade: stops it reached trigger first (a stop-loss must not wait behind a take-profit); then
        resting orders it went strictly through fill as maker at their price, best price first, then by time, up
        to the traded quantity."""
        if symbol in self.rules:
            self._last[symbol] = price
        stops = self._stops.get(symbol)
        if stops:
            hit = [o for o in stops if o.open and (price <= o.stop_price if o.side == "SELL" else
                                                   price >= o.stop_price)]
            if hit:
                self._stops[symbol] = [o for o in stops if o.open and all(o is not h for h in hit)]
                for order in hit:
                    self._trigger(order)
        resting = self._resting.get(symbol)
        if not resting:
            return
        rules = self.rules[symbol]
        hit = [o for o in resting if (o.side == "BUY" and price < o.price) or (o.side == "SELL" and price > o.price)]
        hit.sort(key=lambda o: (-o.price if o.side == "BUY" else o.price, o.time, o.order_id))
        left = qty
        for order in hit:
            if left <= 0:
                break
            fill_qty = min(order.left, left)
            left -= fill_qty
            self._fill(self._accounts[order.key], order, rules, order.price, fill_qty, maker=True)
        self._resting[symbol] = [o for o in resting if o.open]

    def _trigger(self, order: EngineOrder) -> None:
        """A stop reached: it executes like a MARKET order against the book now; what the book cannot fill
        expires. A sell's locked base pays its fills; a buy's locked quote is freed and its fills paid from it."""
        account, rules = self._accounts[order.key], self.rules[order.symbol]
        order.working = True
        order.update_time = self.clock_ms()
        levels = self.book.levels(rules.symbol, "asks" if order.side == "BUY" else "bids", BOOK_DEPTH)
        plan = _walk(levels, order.qty, None, None, rules)
        if order.side == "BUY":
            self._release(account, order, rules)
            _, cost = self._market_needs(rules, "BUY", plan, order.qty, None)
            if account.bal(rules.quote).free < cost:
                plan = []  # the funds are no longer there: nothing executes, the order expires
        for fill_price, fill_qty in plan:
            self._fill(account, order, rules, fill_price, fill_qty, maker=False)
        if order.open:
            self._close(order, rules, "EXPIRED")
            if not plan and order.side == "BUY":
                self._emit_balances(order.key, rules, order.side)

    def _fill(self, account: _Account, order: EngineOrder, rules: SymbolRules, price: Decimal, qty: Decimal,
              maker: bool) -> None:
        now = self.clock_ms()
        notional = price * qty
        rate = self.maker_fee if maker else self.taker_fee
        base, quote = account.bal(rules.base), account.bal(rules.quote)
        if order.side == "BUY":  # the commission comes out of the base received
            fee, fee_asset = (qty * rate).quantize(Q8, ROUND_HALF_EVEN), rules.base
            release = min(order.lock_left, qty * order.price) if order.lock_left else ZERO
            order.lock_left -= release
            quote.locked -= release
            quote.free += release - notional
            base.free += qty - fee
        else:  # out of the quote received
            fee, fee_asset = (notional * rate).quantize(Q8, ROUND_HALF_EVEN), rules.quote
            release = min(order.lock_left, qty)
            order.lock_left -= release
            base.locked -= release
            base.free -= qty - release
            quote.free += notional - fee
        fill = EngineFill(trade_id=next(self._trade_ids), order_id=order.order_id, symbol=order.symbol,
                          side=order.side, price=price, qty=qty, commission=fee, commission_asset=fee_asset,
                          time=now, maker=maker)
        order.executed += qty
        order.cum_quote += notional
        order.update_time = now
        order.fills.append(fill)
        account.trades.append(fill)
        full = order.executed >= order.qty
        order.status = "FILLED" if full else "PARTIALLY_FILLED"
        if full:
            order.working = False
            self._release(account, order, rules)
        self._emit_order(order, "TRADE", fill)
        self._emit_balances(order.key, rules)

    # -- cancel, query ----------------------------------------------------------------------------------

    def cancel(self, key: str, symbol: str, order_id: int | None = None, client_id: str | None = None,
               cancel_id: str | None = None) -> EngineOrder:
        """``cancel_id`` is the cancel request's own client id (its ``newClientOrderId``); one is made if none."""
        order = self._find(key, symbol, order_id, client_id, missing=(-2011, "Unknown order sent."))
        if not order.open:
            raise EngineError(-2011, "Unknown order sent.")
        order.cancel_id = cancel_id or f"cancel-{next(self._cancel_ids)}"
        self._close(order, self.rules[symbol], "CANCELED")
        self._resting[symbol] = [o for o in self._resting.get(symbol, []) if o.open]
        self._stops[symbol] = [o for o in self._stops.get(symbol, []) if o.open]
        return order

    def cancel_all(self, key: str, symbol: str) -> list[EngineOrder]:
        self.symbol_rules(symbol)
        orders = [o for o in self.open_orders(key, symbol)]
        if not orders:
            raise EngineError(-2011, "Unknown order sent.")
        return [self.cancel(key, symbol, o.order_id) for o in orders]

    def get(self, key: str, symbol: str, order_id: int | None = None, client_id: str | None = None) -> EngineOrder:
        return self._find(key, symbol, order_id, client_id, missing=(-2013, "Order does not exist."))

    def open_orders(self, key: str, symbol: str | None = None) -> list[EngineOrder]:
        if symbol is not None:
            self.symbol_rules(symbol)
        return [o for o in self._account(key).orders.values() if o.open and symbol in (None, o.symbol)]

    def all_orders(self, key: str, symbol: str) -> list[EngineOrder]:
        self.symbol_rules(symbol)
        return [o for o in self._account(key).orders.values() if o.symbol == symbol]

    def my_trades(self, key: str, symbol: str) -> list[EngineFill]:
        self.symbol_rules(symbol)
        return [t for t in self._account(key).trades if t.symbol == symbol]

    def _find(self, key: str, symbol: str, order_id: int | None, client_id: str | None,
              missing: tuple[int, str]) -> EngineOrder:
        account = self._account(key)
        self.symbol_rules(symbol)
        if order_id is None and client_id is None:
            raise EngineError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        order = account.orders.get(order_id) if order_id is not None else account.by_client.get((symbol, client_id))
        if order is None or order.symbol != symbol or (client_id is not None and order.client_id != client_id):
            raise EngineError(*missing)
        return order

    def _close(self, order: EngineOrder, rules: SymbolRules, status: str) -> None:
        order.status = status
        order.working = False
        order.update_time = self.clock_ms()
        released = self._release(self._accounts[order.key], order, rules)
        self._emit_order(order, status)
        if released:
            self._emit_balances(order.key, rules, order.side)

    def _release(self, account: _Account, order: EngineOrder, rules: SymbolRules) -> bool:
        if not order.lock_left:
            return False
        held = account.bal(rules.quote if order.side == "BUY" else rules.base)
        held.locked -= order.lock_left
        held.free += order.lock_left
        order.lock_left = ZERO
        return True

    # -- events -----------------------------------------------------------------------------------------

    def _emit(self, key: str, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            listener(key, event)

    def _emit_order(self, order: EngineOrder, execution: str, fill: EngineFill | None = None) -> None:
        self._emit(order.key, execution_report(order, execution, fill, self.clock_ms()))

    def _emit_balances(self, key: str, rules: SymbolRules, side: str | None = None) -> None:
        assets = [rules.base, rules.quote] if side is None else [rules.quote if side == "BUY" else rules.base]
        balances = self._accounts[key].balances
        now = self.clock_ms()
        self._emit(key, {"e": "outboundAccountPosition", "E": now, "u": now, "B": [
            {"a": a, "f": fmt(balances[a].free), "l": fmt(balances[a].locked)} for a in assets if a in balances]})


def _check_limit(rules: SymbolRules, type: str, quantity: Decimal | None, quote_qty: Decimal | None,
                 price: Decimal | None, tif: str | None) -> None:
    if quantity is None or price is None:
        raise _mandatory("quantity" if quantity is None else "price")
    if quote_qty is not None:
        raise EngineError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
    if type == "LIMIT" and tif is None:
        raise _mandatory("timeInForce")
    if type == "LIMIT_MAKER" and tif is not None:
        raise EngineError(-1106, "Parameter 'timeInForce' sent when not required.")
    if tif is not None and tif not in TIME_IN_FORCE:
        raise EngineError(-1115, "Invalid timeInForce.")
    rules.check_price(price)
    rules.check_qty(quantity)
    if quantity * price < rules.min_notional:
        raise filter_failure("NOTIONAL")


def _check_stop(rules: SymbolRules, quantity: Decimal | None, quote_qty: Decimal | None, price: Decimal | None,
                tif: str | None, stop_price: Decimal | None) -> None:
    if quantity is None or stop_price is None:
        raise _mandatory("quantity" if quantity is None else "stopPrice")
    for name, value in (("price", price), ("timeInForce", tif), ("quoteOrderQty", quote_qty)):
        if value is not None:
            raise EngineError(-1106, f"Parameter '{name}' sent when not required.")
    rules.check_price(stop_price)
    rules.check_qty(quantity)
    if rules.min_notional_market and quantity * stop_price < rules.min_notional:
        raise filter_failure("NOTIONAL")


def _mandatory(name: str) -> EngineError:
    return EngineError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _walk(levels: list[tuple[Decimal, Decimal]], qty: Decimal | None, quote: Decimal | None, bound: Decimal | None,
          rules: SymbolRules) -> Plan:
    """(price, qty) taken from ``levels`` (best first) for ``qty`` of base or ``quote`` to spend, at prices no
    worse than ``bound`` (a buy's limit, or minus a sell's limit: ``price * sign <= bound``)."""
    plan: Plan = []
    for price, available in levels:
        if bound is not None and (price if bound > 0 else -price) > bound:
            break
        if qty is not None:
            take = min(qty, available)
            qty -= take
        else:
            assert quote is not None
            take = min(available, rules.floor_qty(quote / price))
            quote -= take * price
        if take > 0:
            plan.append((price, take))
        if (qty is not None and qty <= 0) or take < available:
            break
    return plan


def execution_report(order: EngineOrder, execution: str, fill: EngineFill | None, now: int) -> dict[str, Any]:
    """Binance's spot ``executionReport`` for one change of ``order``."""
    return {
        # On CANCELED, as Binance: "c" is the cancel request's client id, "C" the canceled order's.
        "e": "executionReport", "E": now, "s": order.symbol,
        "c": order.cancel_id if execution == "CANCELED" else order.client_id, "S": order.side,
        "o": order.type, "f": order.tif, "q": fmt(order.qty), "p": fmt(order.price), "P": fmt(order.stop_price),
        "F": fmt(ZERO), "g": -1, "C": order.client_id if execution == "CANCELED" else "", "x": execution,
        "X": order.status, "r": "NONE", "i": order.order_id,
        "l": fmt(fill.qty if fill else ZERO), "z": fmt(order.executed), "L": fmt(fill.price if fill else ZERO),
        "n": fmt(fill.commission) if fill else "0", "N": fill.commission_asset if fill else None,
        "T": fill.time if fill else order.update_time, "t": fill.trade_id if fill else -1, "I": order.order_id,
        "w": order.working, "m": fill.maker if fill else False, "M": bool(fill), "O": order.time,
        "Z": fmt(order.cum_quote), "Y": fmt(fill.quote_qty if fill else ZERO), "Q": fmt(order.quote_qty),
        "W": order.time, "V": "EXPIRE_MAKER",
    }
