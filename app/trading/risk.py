"""Pre-trade risk: limits that bind the model and the human alike, and the kill switch.

``RiskManager.check`` runs on every order request before it reaches a broker, whatever its origin, and either
passes it (None) or returns a ``Veto`` whose message says why in a trader's words. Checks, in this order (the
first failure is reported):

0. quantity > 0;
1. state: HALTED lets through only FLATTEN-origin orders that reduce the position; REDUCING (daily loss limit
   reached, latched) only orders that reduce it;
2. quantity at least the instrument's minimum (not for a reduce-only or FLATTEN order that reduces: closing is never
   refused for size, as the broker and the exchanges rule) and a whole multiple of its lot size; limit/stop price
   present, positive and on its tick (``app.market.instruments``: each symbol has its own);
3. a last price exists (every order needs one: market orders to estimate the notional, limits for the band);
4. a limit price within ±price_band_pct of the last price (stop prices are not banded: a stop is meant to be away
   from the market);
5. order value (limit or stop price, or the last price for a market order) between the instrument's minimum
   value (closing orders exempt, as in 2) and max_order_notional (quote currency; per-symbol overrides in
   ``order_value_by_symbol``);
6. a ``reduce_only`` request must reduce;
7. position limit, in money: |position + every open order on the same side that could increase it + this
   order| x the order's price <= max_position_value (quote currency; per-symbol overrides in
   ``position_value_by_symbol``; worst case: they all fill); orders that reduce are exempt;
8. open orders on the symbol < max_open_orders.

"Reduces" means: the order's side opposes the position and its quantity, plus the remaining quantity of open
orders already working to close it on that side, is at most |position|. Bracket legs that share a parent (an
OCO pair) count once, at the larger of the two, since at most one of them can fill. FLATTEN orders that reduce
are exempt from the notional bounds and the open-order count (closing must never be refused for size); the
flatten procedure cancels the symbol's working orders first so its order counts as reducing.

The daily loss limit is breached when ``day_pnl <= -daily_loss_limit``; the state then becomes REDUCING and stays
so (a loss limit that lifts when the price bounces is no limit) until ``resume()`` finds the day's PnL back above
the limit, which normally means a new UTC day. ``kill()`` sets HALTED; ``resume()`` returns to ACTIVE, or to
REDUCING while the loss limit is still breached.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from app.market.instruments import Instruments
from app.models import Order, OrderOrigin, OrderRequest, OrderType, Position, Side

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits in the quote currency, the same for every symbol unless overridden: a position limit in base units
    would be 0.5 BTC and 0.5 XRP alike (a $30,000 and a $0.30 position)."""

    max_order_notional: Decimal = Decimal("5000")  # largest order value, per order
    max_position_value: Decimal = Decimal("25000")  # largest |position| x price, per symbol
    max_open_orders: int = 10  # per symbol
    price_band_pct: Decimal = Decimal("5")
    daily_loss_limit: Decimal = Decimal("500")  # quote currency
    quote_currency: str = "USDT"
    order_value_by_symbol: Mapping[str, Decimal] = field(default_factory=dict)
    position_value_by_symbol: Mapping[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_order_notional", "max_position_value"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        for table in (self.order_value_by_symbol, self.position_value_by_symbol):
            for symbol, v in table.items():
                if not v > 0:
                    raise ValueError(f"the limit for {symbol} must be positive")
        for name in ("price_band_pct", "daily_loss_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_open_orders < 1:
            raise ValueError("max_open_orders must be at least 1")

    def max_order_value(self, symbol: str) -> Decimal:
        return self.order_value_by_symbol.get(symbol.upper(), self.max_order_notional)

    def max_position_value_of(self, symbol: str) -> Decimal:
        return self.position_value_by_symbol.get(symbol.upper(), self.max_position_value)


class RiskState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # only orders that reduce exposure
    HALTED = "HALTED"  # kill switch: only FLATTEN orders that reduce


class VetoCode(StrEnum):
    HALTED = "HALTED"
    REDUCING = "REDUCING"
    QTY_NOT_POSITIVE = "QTY_NOT_POSITIVE"
    LOT_SIZE = "LOT_SIZE"
    PRICE_MISSING = "PRICE_MISSING"
    TICK_SIZE = "TICK_SIZE"
    NO_LAST_PRICE = "NO_LAST_PRICE"
    PRICE_BAND = "PRICE_BAND"
    NOTIONAL_TOO_LARGE = "NOTIONAL_TOO_LARGE"
    NOTIONAL_TOO_SMALL = "NOTIONAL_TOO_SMALL"
    REDUCE_ONLY = "REDUCE_ONLY"
    POSITION_LIMIT = "POSITION_LIMIT"
    TOO_MANY_OPEN_ORDERS = "TOO_MANY_OPEN_ORDERS"


@dataclass(frozen=True, slots=True)
class Veto:
    code: VetoCode
    message: str

    def __str__(self) -> str:
        return self.message


def fmt_qty(q: Decimal) -> str:
    """0.000001, 1.5, 10 - never exponent notation."""
    s = format(q.normalize(), "f")
    return s


def fmt_decimals(x: Decimal, places: int) -> str:
    return f"{x:,.{places}f}"


def reducing_open_qty(position: Position, side: Side, open_orders: Iterable[Order]) -> Decimal:
    """Remaining quantity of open orders of ``side`` on the position's symbol that work to close it (side opposes
    the position); OCO legs sharing a parent count once, at the larger."""
    if position.qty == 0 or (side is Side.SELL) != (position.qty > 0):
        return Decimal(0)
    total = Decimal(0)
    by_parent: dict[str, Decimal] = {}
    for o in open_orders:
        if o.symbol != position.symbol or o.request.side is not side or not o.status.is_open:
            continue
        if o.request.parent_id is not None and o.request.origin is OrderOrigin.BRACKET:
            pid = o.request.parent_id
            by_parent[pid] = max(by_parent.get(pid, Decimal(0)), o.remaining)
        else:
            total += o.remaining
    return total + sum(by_parent.values(), Decimal(0))


def is_reducing(req: OrderRequest, position: Position, open_orders: Iterable[Order]) -> bool:
    if position.qty == 0 or req.symbol != position.symbol:
        return False
    opposes = (req.side is Side.SELL) == (position.qty > 0)
    if not opposes:
        return False
    return req.qty + reducing_open_qty(position, req.side, open_orders) <= abs(position.qty)


class RiskManager:
    def __init__(self, limits: RiskLimits | None = None, max_transitions: int = 100,
                 instruments: Instruments | None = None) -> None:
        self.limits = limits or RiskLimits()
        self.instruments = instruments or Instruments()
        self._state = RiskState.ACTIVE
        self.vetoes: Counter[str] = Counter()
        self.checked = 0
        self.passed = 0
        self.last_veto: Veto | None = None
        self.last_day_pnl = Decimal(0)
        self.transitions: deque[tuple[RiskState, str]] = deque(maxlen=max_transitions)
        self._listeners: list[Callable[[RiskState, str], None]] = []

    # ------------------------------------------------------------------------------------------------ state

    @property
    def state(self) -> RiskState:
        return self._state

    def add_listener(self, on_state: Callable[[RiskState, str], None]) -> None:
        self._listeners.append(on_state)

    def _set_state(self, state: RiskState, why: str) -> None:
        if state is self._state:
            return
        self._state = state
        self.transitions.append((state, why))
        log.warning("risk state %s: %s", state.value, why)
        for cb in list(self._listeners):
            try:
                cb(state, why)
            except Exception:
                log.exception("risk state listener failed")

    def loss_limit_breached(self, day_pnl: Decimal) -> bool:
        return day_pnl <= -self.limits.daily_loss_limit

    def observe_day_pnl(self, day_pnl: Decimal) -> RiskState:
        """Feed the day's PnL (e.g. on every portfolio sample): enters REDUCING when the loss limit is reached."""
        self.last_day_pnl = day_pnl
        if self._state is RiskState.ACTIVE and self.loss_limit_breached(day_pnl):
            ccy = self.limits.quote_currency
            self._set_state(
                RiskState.REDUCING,
                f"day loss {fmt_decimals(-day_pnl, 2)} {ccy} reached the daily limit "
                f"{fmt_decimals(self.limits.daily_loss_limit, 2)} {ccy}; only orders that reduce a position pass",
            )
        return self._state

    def kill(self, why: str = "kill switch") -> None:
        self._set_state(RiskState.HALTED, why)

    def resume(self, day_pnl: Decimal | None = None) -> RiskState:
        if day_pnl is not None:
            self.last_day_pnl = day_pnl
        if self.loss_limit_breached(self.last_day_pnl):
            self._set_state(RiskState.REDUCING, "resumed, but the daily loss limit is still breached")
        else:
            self._set_state(RiskState.ACTIVE, "resumed")
        return self._state

    def restore(self, state: RiskState, why: str, day_pnl: Decimal | None = None) -> None:
        """Take back the state a restart found in the journal (the kill switch survives a crash); nothing else
        about the limits changes. A listener hears it like any other transition."""
        if day_pnl is not None:
            self.last_day_pnl = day_pnl
        self._set_state(state, why)

    # ------------------------------------------------------------------------------------------------ check

    def check(
        self,
        req: OrderRequest,
        *,
        last_price: Decimal | None,
        position: Position,
        open_orders: list[Order],
        day_pnl: Decimal,
    ) -> Veto | None:
        self.checked += 1
        self.observe_day_pnl(day_pnl)
        veto = self._check(req, last_price, position, open_orders)
        if veto is None:
            self.passed += 1
        else:
            self.vetoes[veto.code] += 1
            self.last_veto = veto
            log.info("risk veto %s on %s %s %s: %s", veto.code, req.side, req.qty, req.symbol, veto.message)
        return veto

    def _check(
        self, req: OrderRequest, last_price: Decimal | None, position: Position, open_orders: list[Order]
    ) -> Veto | None:
        lim = self.limits
        inst = self.instruments.get(req.symbol)
        ccy = inst.quote or lim.quote_currency
        symbol_open = [o for o in open_orders if o.symbol == req.symbol and o.status.is_open]
        reducing = req.qty > 0 and is_reducing(req, position, symbol_open)
        flatten = req.origin is OrderOrigin.FLATTEN and reducing
        # Closing is never refused for size (the broker's rule too, as the exchanges' reduce-only rule): a position
        # below the minimum quantity or value can still be flattened. The lot check still applies.
        closing = reducing and (req.reduce_only or req.origin is OrderOrigin.FLATTEN)
        side_word = "buy" if req.side is Side.BUY else "sell"

        if req.qty <= 0:
            return Veto(VetoCode.QTY_NOT_POSITIVE, f"quantity {fmt_qty(req.qty)} must be greater than zero")
        qty_words = f"{fmt_qty(req.qty)} {inst.base}".rstrip()

        # 1. state
        if self._state is RiskState.HALTED and not flatten:
            return Veto(
                VetoCode.HALTED,
                "trading is halted (kill switch); only flattening orders that reduce a position pass",
            )
        if self._state is RiskState.REDUCING and not reducing:
            return Veto(VetoCode.REDUCING, self._not_reducing_message(req, position, symbol_open, ccy))

        # 2. quantity and prices, on the instrument's own grids
        if req.qty < inst.min_qty and not closing:
            return Veto(VetoCode.LOT_SIZE, f"quantity {qty_words} is below the minimum {fmt_qty(inst.min_qty)} "
                                           f"for {req.symbol}")
        if not inst.on_lot(req.qty):
            return Veto(
                VetoCode.LOT_SIZE,
                f"quantity {qty_words} is not a multiple of the lot size {fmt_qty(inst.lot_size)} of {req.symbol}",
            )
        for name, price, needed in (
            ("limit", req.limit_price, req.type is OrderType.LIMIT),
            ("stop", req.stop_price, req.type is OrderType.STOP_MARKET),
        ):
            if price is None:
                if needed:
                    return Veto(VetoCode.PRICE_MISSING, f"a {req.type.value.lower()} order needs a {name} price")
                continue
            if price <= 0:
                return Veto(VetoCode.PRICE_MISSING, f"{name} price {fmt_qty(price)} must be greater than zero")
            if not inst.on_tick(price):
                return Veto(
                    VetoCode.TICK_SIZE,
                    f"{name} price {fmt_qty(price)} is not on the tick size {fmt_qty(inst.tick_size)} of {req.symbol}",
                )

        # 3. reference price
        if last_price is None or last_price <= 0:
            what = "a market order" if req.type is OrderType.MARKET else "the order"
            return Veto(
                VetoCode.NO_LAST_PRICE,
                f"no last price for {req.symbol} yet, so {what} cannot be checked; wait for the first trade",
            )

        # 4. price band (limit price only)
        if req.type is OrderType.LIMIT and req.limit_price is not None:
            off = (req.limit_price - last_price) / last_price * 100
            if abs(off) > lim.price_band_pct:
                return Veto(
                    VetoCode.PRICE_BAND,
                    f"limit {inst.fmt_price(req.limit_price)} is {abs(off):.1f}% from the last price "
                    f"{inst.fmt_price(last_price)}; the band is ±{fmt_qty(lim.price_band_pct)}%",
                )

        # 5. notional
        ref = {OrderType.LIMIT: req.limit_price, OrderType.STOP_MARKET: req.stop_price}.get(req.type) or last_price
        notional = req.qty * ref
        if not flatten:
            basis = "" if req.type is not OrderType.MARKET else f" at the last price {inst.fmt_price(last_price)}"
            max_value = lim.max_order_value(req.symbol)
            if notional > max_value:
                return Veto(
                    VetoCode.NOTIONAL_TOO_LARGE,
                    f"order value {inst.fmt_money(notional)} {ccy} ({side_word} {qty_words}){basis} is above the "
                    f"maximum {inst.fmt_money(max_value)} {ccy} per order on {req.symbol}",
                )
            if notional < inst.min_notional and not closing:
                return Veto(
                    VetoCode.NOTIONAL_TOO_SMALL,
                    f"order value {inst.fmt_money(notional)} {ccy} ({side_word} {qty_words}){basis} is below the "
                    f"minimum {inst.fmt_money(inst.min_notional)} {ccy} for {req.symbol}",
                )

        # 6. reduce-only flag
        if req.reduce_only and not reducing:
            return Veto(
                VetoCode.REDUCE_ONLY,
                f"reduce-only {side_word} of {fmt_qty(req.qty)} would not reduce the position "
                f"{fmt_qty(position.qty)} {req.symbol}" + self._working_note(req, position, symbol_open),
            )

        # 7. position limit (worst case: every open order that can increase exposure on this side fills)
        if not reducing:
            sign = 1 if req.side is Side.BUY else -1
            working = sum(
                (o.remaining for o in symbol_open if o.request.side is req.side and not o.request.reduce_only),
                Decimal(0),
            )
            resulting = position.qty + sign * (req.qty + working)
            value = abs(resulting) * ref
            max_value = lim.max_position_value_of(req.symbol)
            if value > max_value:
                extra = f" with {fmt_qty(working)} already working on that side" if working else ""
                return Veto(
                    VetoCode.POSITION_LIMIT,
                    f"{side_word} {qty_words} would take the position from {fmt_qty(position.qty)} to "
                    f"{fmt_qty(resulting)} {req.symbol}{extra}, worth {inst.fmt_money(value)} {ccy}; the limit is "
                    f"{inst.fmt_money(max_value)} {ccy} per symbol",
                )

        # 8. open orders
        if not flatten and len(symbol_open) >= lim.max_open_orders:
            return Veto(
                VetoCode.TOO_MANY_OPEN_ORDERS,
                f"{len(symbol_open)} orders are already open on {req.symbol}; the limit is {lim.max_open_orders}",
            )
        return None

    def _working_note(self, req: OrderRequest, position: Position, symbol_open: list[Order]) -> str:
        working = reducing_open_qty(position, req.side, symbol_open)
        if working and req.qty <= abs(position.qty):
            return f" ({fmt_qty(working)} is already working to close it; cancel those orders first)"
        return ""

    def _not_reducing_message(self, req: OrderRequest, position: Position, symbol_open: list[Order], ccy: str) -> str:
        side_word = "buy" if req.side is Side.BUY else "sell"
        why = (
            f"the daily loss limit {fmt_decimals(self.limits.daily_loss_limit, 2)} {ccy} is reached; "
            "only orders that reduce a position pass"
        )
        if position.qty == 0:
            return f"{why}, and there is no {req.symbol} position to reduce"
        return (
            f"{why}: {side_word} {fmt_qty(req.qty)} does not reduce the position {fmt_qty(position.qty)} "
            f"{req.symbol}" + self._working_note(req, position, symbol_open)
        )
