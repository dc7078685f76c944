"""The account summary and the order ticket, made without Qt.

``account_view``: equity, cash, day PnL and unrealised PnL for the whole account, and the unrealised PnL and position
of the symbol on screen, each row labelled with what it covers ("· account", "· BTCUSDT") so nobody reads one for
the other; the risk state. ``ticket_view``: what the ticket holds now, read back to the trader: the symbol, bid / ask,
the order's value and its share of equity, the stop-loss and take-profit as both price and percent, and the order in
words, or what is wrong with it. Every text is in the instrument's precision; the widgets only paint.

The ticket takes stop-loss and take-profit as prices (a trader thinks in price) or as percents ("2%"), and the order
carries them as typed: a price as that price (``OrderRequest.stop_loss_price``: the leg lands there whatever the fill,
slippage or a stop entry), a percent as a percent from the fill (``stop_loss_pct``). Each is read back as both, measured
from the price the order is expected to fill at (its limit or stop price, else the touch it would take).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from app.market.instruments import _FIAT_LIKE, Instrument, Instruments, amount_problem
from app.models import OrderType, Side

HUNDRED = Decimal(100)
ZERO = Decimal(0)


# ----- the account ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AccountRow:
    key: str  # "equity", "cash", "day_pnl", "unrealised_account", "unrealised_symbol", "position", "risk"
    label: str  # says what it covers: "Equity · account", "Unrealised · BTCUSDT"
    value: str
    tone: str = ""  # "up" / "down" for a PnL, "ok" / "warn" / "bad" for the risk state, "" otherwise
    tip: str = ""
    name: str = ""  # the figure without its scope: "Unrealised" (a table puts the scope in its column header)
    scope: str = "account"  # "account" or "symbol": what the figure covers


@dataclass(frozen=True, slots=True)
class AccountView:
    rows: tuple[AccountRow, ...]
    symbol: str  # the symbol on screen, which the symbol rows cover
    currency: str  # the account's currency (USDT)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(r.key for r in self.rows)

    def row(self, key: str) -> AccountRow:
        return next(r for r in self.rows if r.key == key)


def money_format(currency: str, instruments: Instruments, symbols: Iterable[str]) -> Callable[..., str]:
    """How an amount of the account's ``currency`` is written: as a symbol quoted in it writes its money (the first
    of ``symbols`` that is: cents for a dollar-like quote, the tick's decimals for a coin), else cents for a
    dollar-like currency and a coin's 8 places for any other (0.51234567 BTC must not read 0.51)."""
    for s in symbols:
        inst = instruments.get(s)
        if inst.quote == currency:
            return inst.fmt_money
    places = 2 if currency in _FIAT_LIKE else 8

    def fmt(x: Decimal, *, sign: bool = False) -> str:
        return f"{x:+,.{places}f}" if sign else f"{x:,.{places}f}"

    return fmt


def _tone(x: Decimal) -> str:
    return "up" if x > 0 else "down" if x < 0 else ""


def account_view(portfolio, *, symbol: str, instruments: Instruments, now_ms: int, risk_state: str,
                 risk_reason: str = "", currency: str = "USDT", symbols: Iterable[str] | None = None) -> AccountView:
    """``portfolio``: cash, equity(), day_pnl(now_ms), unrealized_pnl(symbol), position(symbol), positions;
    ``risk_state``: ACTIVE / REDUCING / HALTED and why; ``symbols``: the account's symbols (default: every position
    the portfolio holds)."""
    inst = instruments.get(symbol)
    held = [p.symbol for p in portfolio.positions if p.qty != 0] if symbols is None else list(symbols)
    unreal_all = sum((portfolio.unrealized_pnl(s) for s in held), ZERO)
    unreal_sym = portfolio.unrealized_pnl(symbol)
    day = portfolio.day_pnl(now_ms)
    pos = portfolio.position(symbol)
    if pos.qty == 0:
        position_text = "flat"
    else:
        position_text = (f"{'LONG' if pos.qty > 0 else 'SHORT'} {inst.fmt_qty(abs(pos.qty))} {inst.base} @ "
                         f"{inst.fmt_price(pos.avg_price)}")
    ccy = f" {currency}" if currency else ""
    _money = money_format(currency, instruments, [symbol, *held])
    sym_ccy = f" {inst.quote}" if inst.quote else ""
    open_count = len(held)
    sym = "symbol"
    rows = (
        AccountRow("equity", "Equity · account", f"{_money(portfolio.equity())}{ccy}",
                   tip="cash plus every position at its last price", name="Equity"),
        AccountRow("cash", "Cash · account", f"{_money(portfolio.cash)}{ccy}", name="Cash"),
        AccountRow("day_pnl", "Day PnL · account", f"{_money(day, sign=True)}{ccy}", _tone(day),
                   "equity now less equity at the start of the UTC day, every symbol", name="Day PnL"),
        AccountRow("unrealised_account", "Unrealised · account", f"{_money(unreal_all, sign=True)}{ccy}",
                   _tone(unreal_all), f"open PnL of {open_count} position{'s' if open_count != 1 else ''}",
                   name="Unrealised"),
        AccountRow("unrealised_symbol", f"Unrealised · {symbol}", f"{inst.fmt_money(unreal_sym, sign=True)}{sym_ccy}",
                   _tone(unreal_sym), f"open PnL of the {symbol} position only", name="Unrealised", scope=sym),
        AccountRow("position", f"Position · {symbol}", position_text, name="Position", scope=sym),
        AccountRow("risk", "Risk", risk_state,
                   {"ACTIVE": "ok", "REDUCING": "warn"}.get(risk_state, "bad"), risk_reason, name="Risk"),
    )
    return AccountView(rows, symbol, currency)


# ----- the ticket ----------------------------------------------------------------------------------------------

def desk_account_view(desk, symbol: str) -> AccountView:
    """``account_view`` of a trading desk's portfolio and risk (what the window shows for ``symbol``)."""
    risk = desk.risk
    reason = risk.transitions[-1][1] if risk.transitions else ""
    return account_view(desk.portfolio, symbol=symbol, instruments=desk.instruments, now_ms=desk.now_ms(),
                        risk_state=risk.state.value, risk_reason=reason, currency=risk.limits.quote_currency)


@dataclass(frozen=True, slots=True)
class Bracket:
    """A stop-loss or take-profit as typed, read back: the price and the percent from the expected fill."""

    price: Decimal
    pct: Decimal
    text: str  # "58,800.00 (−2.00 %)"
    other: str  # what was not typed: "−2.00 %" for a price, "58,800.00" for a percent
    typed_price: bool = False  # typed as a price (the order carries the price), else as a percent


@dataclass(frozen=True, slots=True)
class TicketView:
    symbol: str
    title: str  # "BTCUSDT · PAPER"
    bid: str
    ask: str
    bid_price: Decimal | None  # what a click on the bid / ask button puts into the ticket
    ask_price: Decimal | None
    spread: str
    order_value: str  # "600.00 USDT" or "—"
    pct_equity: str  # "6.0 % of equity" or ""
    stop_loss: str  # "58,800.00 (−2.00 %)" or ""
    take_profit: str
    order_text: str  # "BUY 0.01000 BTCUSDT limit @ 60,000.00 · SL 58,800.00 · TP 63,000.00"
    summary: str  # one line under the ticket: "600.00 USDT · 6.0 % of equity · SL −2.00 % · TP 61,800.00"
    problem: str  # what is wrong with the ticket now, in words ("" when it could be sent)
    qty_hint: str  # "quantity, step 0.00001 BTC"
    price_hint: str  # "limit price, tick 0.01" / "stop price, tick 0.01" / "market: at the touch"
    stop_loss_pct: Decimal | None  # what the order will carry: a percent typed
    take_profit_pct: Decimal | None
    stop_loss_price: Decimal | None = None  # or a price typed (on the tick)
    take_profit_price: Decimal | None = None


def _number(text: str, what: str) -> Decimal | None:
    t = text.strip().replace(",", "")
    if not t:
        return None
    try:
        v = Decimal(t)
    except InvalidOperation:
        raise ValueError(f"{what} {text.strip()!r} is not a number") from None
    problem = amount_problem(v, what)
    if problem is not None:
        raise ValueError(problem)
    return v


def reference_price(side: Side, order_type: OrderType, price: Decimal | None, bid: Decimal | None,
                    ask: Decimal | None, last: Decimal | None) -> Decimal | None:
    """The price the order is expected to fill at: its stop price; its limit price, or the touch when the limit is
    marketable (a buy limit at or above the ask takes the ask); a market order the touch it would take (the ask for a
    buy, the bid for a sell), else the last trade."""
    touch = ask if side is Side.BUY else bid
    if order_type is OrderType.LIMIT and price is not None and touch is not None and touch > 0:
        marketable = price >= touch if side is Side.BUY else price <= touch
        return touch if marketable else price
    if order_type is not OrderType.MARKET and price is not None:
        return price
    return touch if touch is not None and touch > 0 else last


def parse_bracket(text: str, which: str, *, side: Side, ref: Decimal | None, inst: Instrument) -> Bracket | None:
    """``which``: "stop-loss" or "take-profit". A price ("58800"), or a percent from the fill ("2%"). The level must
    sit on the right side of the fill: below it for a buy's stop-loss, above for its take-profit (mirrored for a
    sell). Raises ValueError in words."""
    t = text.strip()
    if not t:
        return None
    pct_given = t.endswith("%")
    v = _number(t.rstrip("%").strip(), f"{which} {'%' if pct_given else 'price'}")
    if v is None:
        return None
    if v <= 0:
        raise ValueError(f"{which} {t} must be greater than zero")
    below = (which == "stop-loss") == (side is Side.BUY)  # a buy's stop is below the fill, its target above
    if pct_given:
        if v >= 100 and below:
            raise ValueError(f"{which} {t} must be below 100 %")
        if ref is None:
            return Bracket(ZERO, v, f"{v.normalize():f} %", "")
        k = 1 - v / HUNDRED if below else 1 + v / HUNDRED
        price = inst.round_price(ref * k)
        return Bracket(price, v, f"{inst.fmt_price(price)} ({'−' if below else '+'}{v:.2f} %)", inst.fmt_price(price))
    price = inst.round_price(v)
    if ref is None:
        raise ValueError(f"{which} as a price needs a market price or a limit price to measure from")
    if (price >= ref) if below else (price <= ref):
        where = "below" if below else "above"
        raise ValueError(f"{which} {inst.fmt_price(price)} must be {where} the entry {inst.fmt_price(ref)} for a "
                         f"{side.value.lower()}")
    pct = abs(price - ref) / ref * HUNDRED
    signed = f"{'−' if below else '+'}{pct:.2f} %"
    return Bracket(price, pct.quantize(Decimal("0.0001")), f"{inst.fmt_price(price)} ({signed})", signed, True)


def ticket_view(symbol: str, *, instrument: Instrument, mode: str, side: Side, order_type: OrderType,
                qty_text: str, price_text: str = "", stop_loss_text: str = "", take_profit_text: str = "",
                bid: Decimal | None = None, ask: Decimal | None = None, last: Decimal | None = None,
                equity: Decimal | None = None, replacing: str | None = None) -> TicketView:
    """What the ticket holds now, read back. ``replacing``: the working order a Modify replaces (named in the
    order's words)."""
    inst = instrument
    problem = ""
    qty = price = None
    try:
        qty = _number(qty_text, "quantity")
        if order_type is not OrderType.MARKET:
            price = _number(price_text, "limit price" if order_type is OrderType.LIMIT else "stop price")
    except ValueError as exc:
        problem = str(exc)
    ref = reference_price(side, order_type, price, bid, ask, last)
    value_text, pct_text = "—", ""
    if qty is not None and ref is not None and qty > 0:
        value = qty * ref
        value_text = f"{inst.fmt_money(value)} {inst.quote}".strip()
        if equity is not None and equity > 0:
            pct_text = f"{value / equity * HUNDRED:.1f} % of equity"
    sl = tp = None
    if not problem:
        try:
            sl = parse_bracket(stop_loss_text, "stop-loss", side=side, ref=ref, inst=inst)
            tp = parse_bracket(take_profit_text, "take-profit", side=side, ref=ref, inst=inst)
        except ValueError as exc:
            problem = str(exc)
    if not problem:
        if qty is None:
            problem = "type a quantity"
        elif qty <= 0:
            problem = f"quantity {inst.fmt_qty(qty)} must be greater than zero"
        elif order_type is not OrderType.MARKET and price is None:
            problem = f"type a {'limit' if order_type is OrderType.LIMIT else 'stop'} price"
    kind = {OrderType.MARKET: "market", OrderType.LIMIT: "limit", OrderType.STOP_MARKET: "stop"}[order_type]
    words = f"{side.value} {inst.fmt_qty(qty) if qty is not None else '?'} {symbol} {kind}"
    if price is not None and order_type is not OrderType.MARKET:
        words += f" @ {inst.fmt_price(inst.round_price(price))}"
    if sl is not None:
        words += f" · SL {inst.fmt_price(sl.price) if sl.price else sl.text}"
    if tp is not None:
        words += f" · TP {inst.fmt_price(tp.price) if tp.price else tp.text}"
    if replacing:
        words += f" (replaces {replacing})"
    hint = {OrderType.MARKET: "market: fills at the touch", OrderType.LIMIT: "limit price",
            OrderType.STOP_MARKET: "stop price"}[order_type]
    if order_type is not OrderType.MARKET:
        hint += f", tick {inst.fmt_price(inst.tick_size)}"
    spread = "—" if bid is None or ask is None else inst.fmt_price(ask - bid)
    summary = " · ".join([value_text] + ([pct_text] if pct_text else [])
                         + [f"{name} {b.other}" for name, b in (("SL", sl), ("TP", tp)) if b is not None and b.other])
    return TicketView(
        summary=summary, symbol=symbol, title=f"{symbol} · {mode}", bid=inst.fmt_price(bid), ask=inst.fmt_price(ask),
        bid_price=bid, ask_price=ask, spread=spread, order_value=value_text, pct_equity=pct_text,
        stop_loss=sl.text if sl is not None else "", take_profit=tp.text if tp is not None else "",
        order_text=words, problem=problem,
        qty_hint=f"quantity, step {inst.fmt_qty(inst.lot_size)} {inst.base}".rstrip(), price_hint=hint,
        stop_loss_pct=sl.pct if sl is not None and not sl.typed_price else None,
        take_profit_pct=tp.pct if tp is not None and not tp.typed_price else None,
        stop_loss_price=sl.price if sl is not None and sl.typed_price else None,
        take_profit_price=tp.price if tp is not None and tp.typed_price else None,
    )
