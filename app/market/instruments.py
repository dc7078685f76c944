"""Per-symbol trading rules: tick size, lot size, minimum quantity and order value, display precision.

An ``Instrument`` is what the exchange says about one symbol. Every price and quantity the terminal makes or shows
goes through one: proposals size on its lot grid, the risk manager and the paper broker check its tick, lot,
minimum quantity and minimum value, and the UI writes numbers with its decimals (XRPUSDT at 0.6 is ``0.6012``,
not ``0.60``).

Loading is I/O (``load_instruments``: one REST request per exchange, httpx as in ``history.py``); parsing is pure
and validated (``parse_binance``, ``parse_coinbase``, ``parse_kraken``): an answer that is missing, malformed or
silent about a symbol is a clear reason, never a crash. A symbol without exchange filters gets safe defaults
derived from its first observed price (``Instruments.observe_price``), and the trader is told so in one line
(``Instruments.problems``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

# Quote currencies a symbol like "XRPUSDT" may end with; the longest match wins ("USDT" before "USD").
QUOTES = ("USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USD", "EUR", "GBP", "JPY", "TRY", "BRL", "BTC", "ETH", "BNB",
          "DAI", "SOL")
MAX_DECIMALS = 12  # finer steps than 1e-12 are no real exchange's and would only hide a unit mix-up
# The largest price or quantity typed or proposed that is taken at all: no market trades near it, and beyond it a
# typo would show as an order rather than as a refusal.
MAX_AMOUNT = Decimal("1e12")


def amount_problem(value: Decimal, what: str) -> str | None:
    """Why a typed or proposed price or quantity cannot be taken, in the trader's words; None when it can."""
    if not value.is_finite():
        return f"{what} must be a finite number"
    if abs(value) > MAX_AMOUNT:
        return f"{what} {value:,f} is too large: the largest taken is {MAX_AMOUNT:,f}"
    return None
COINBASE_PRODUCT_URL = "https://api.coinbase.com/api/v3/brokerage/market/products/{product_id}"
KRAKEN_ASSET_PAIRS_URL = "https://api.kraken.com/0/public/AssetPairs"
# Kraken's REST names some assets by their old codes; the terminal uses the common ones.
_KRAKEN_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}


class InstrumentError(ValueError):
    """An exchange answer that does not describe a usable instrument; the message says what is wrong."""


def split_symbol(symbol: str) -> tuple[str, str]:
    """``"XRPUSDT"`` -> ``("XRP", "USDT")``; ``"BTC-USD"``/``"BTC/USD"`` split on the separator. An unknown quote
    gives ``(symbol, "")``."""
    s = symbol.upper()
    for sep in ("-", "/"):
        if sep in s:
            base, _, quote = s.partition(sep)
            return base, quote
    for quote in sorted(QUOTES, key=len, reverse=True):
        if s.endswith(quote) and len(s) > len(quote):
            return s[: -len(quote)], quote
    return s, ""


def decimals_of(step: Decimal) -> int:
    """Decimals needed to write multiples of ``step`` exactly: 0.01 -> 2, 0.5 -> 1, 10 -> 0."""
    exp = step.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    base: str
    quote: str
    tick_size: Decimal  # prices are whole multiples of it
    lot_size: Decimal  # quantities are whole multiples of it (the exchange's step)
    min_qty: Decimal
    min_notional: Decimal  # smallest order value, quote currency
    price_decimals: int
    qty_decimals: int
    from_exchange: bool = True  # False: safe defaults, the exchange's own filters are unknown

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size"):
            v = getattr(self, name)
            if not (v.is_finite() and v > 0):
                raise InstrumentError(f"{self.symbol}: {name} {v} must be a positive number")
        for name in ("min_qty", "min_notional"):
            v = getattr(self, name)
            if not (v.is_finite() and v >= 0):
                raise InstrumentError(f"{self.symbol}: {name} {v} must not be negative")
        for name in ("tick_size", "lot_size"):
            if decimals_of(getattr(self, name)) > MAX_DECIMALS:
                raise InstrumentError(f"{self.symbol}: {name} {getattr(self, name)} is finer than 1e-{MAX_DECIMALS}")
        for name in ("price_decimals", "qty_decimals"):
            if not 0 <= getattr(self, name) <= MAX_DECIMALS:
                raise InstrumentError(f"{self.symbol}: {name} must be between 0 and {MAX_DECIMALS}")

    @classmethod
    def from_steps(cls, symbol: str, tick_size: Decimal, lot_size: Decimal, *, min_qty: Decimal | None = None,
                   min_notional: Decimal = Decimal(0), base: str | None = None, quote: str | None = None,
                   from_exchange: bool = True) -> Instrument:
        """Display decimals follow the steps (a 0.0001 tick shows 4 decimals)."""
        b, q = split_symbol(symbol)
        return cls(symbol=symbol.upper(), base=base or b, quote=quote or q, tick_size=tick_size,
                   lot_size=lot_size, min_qty=lot_size if min_qty is None else min_qty, min_notional=min_notional,
                   price_decimals=decimals_of(tick_size), qty_decimals=decimals_of(lot_size),
                   from_exchange=from_exchange)

    # ----- rounding ------------------------------------------------------------------------------------------
    def round_price(self, price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """On the tick grid (any tick, not only powers of ten), written with the tick's decimals."""
        return _on_grid(price, self.tick_size, rounding)

    def round_qty(self, qty: Decimal, rounding: str = ROUND_DOWN) -> Decimal:
        """In whole lots, rounded down by default (never more than was asked)."""
        return _on_grid(qty, self.lot_size, rounding)

    def on_tick(self, price: Decimal) -> bool:
        return _is_on(price, self.tick_size)

    def on_lot(self, qty: Decimal) -> bool:
        return _is_on(qty, self.lot_size)

    def size_problem(self, qty: Decimal, price: Decimal | None) -> str | None:
        """Why the exchange would refuse this size, in the trader's words; None when it would not."""
        if qty < self.min_qty:
            return (f"quantity {self.fmt_qty(qty)} {self.base} is below the minimum "
                    f"{self.fmt_qty(self.min_qty)} {self.base} for {self.symbol}")
        if price is not None and self.min_notional > 0 and qty * price < self.min_notional:
            return (f"order value {self.fmt_money(qty * price)} {self.quote} is below the minimum "
                    f"{self.fmt_money(self.min_notional)} {self.quote} for {self.symbol}")
        return None

    # ----- display -------------------------------------------------------------------------------------------
    def fmt_price(self, price: float | Decimal | None, *, sign: bool = False) -> str:
        """A price with the instrument's decimals and thousands separators; an em dash for none."""
        return _fmt(price, self.price_decimals, sign)

    def fmt_qty(self, qty: float | Decimal | None, *, sign: bool = False) -> str:
        return _fmt(qty, self.qty_decimals, sign)

    def fmt_money(self, value: float | Decimal | None, *, sign: bool = False) -> str:
        """An amount of the quote currency (order value, PnL): cents, or the tick's decimals when finer matters
        (a BTC-quoted pair's value of 0.0021 BTC)."""
        return _fmt(value, max(2, self.price_decimals) if self.quote not in _FIAT_LIKE else 2, sign)


_FIAT_LIKE = frozenset({"USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USD", "EUR", "GBP", "JPY", "TRY", "BRL", "DAI", ""})


def _fmt(x: float | Decimal | None, places: int, sign: bool) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return "—"
    return f"{x:{'+' if sign else ''},.{places}f}"


def _grid_digits(x: Decimal, step: Decimal) -> int:
    """Digits enough to hold x / step exactly: the default 28 would raise (DivisionImpossible) on a price of 1e30."""
    return max(28, x.adjusted() - step.adjusted() + len(step.as_tuple().digits) + 4)


def _is_on(x: Decimal, step: Decimal) -> bool:
    """Whether x is a whole number of steps; never raises (a value no grid holds, e.g. infinity, is not on it)."""
    if not x.is_finite():
        return False
    try:
        with localcontext() as ctx:
            ctx.prec = _grid_digits(x, step)
            return x % step == 0
    except (InvalidOperation, ArithmeticError):
        return False


def _on_grid(x: Decimal, step: Decimal, rounding: str) -> Decimal:
    # Written with the step's decimals (0.10 for a 0.01 tick); whole steps of 1 or more as integers, never 1E+1.
    # Never raises: a value too large for the default 28 digits is rounded with as many as it needs, and one no
    # grid holds (infinity, NaN) comes back as it is, for the checks at the boundaries to refuse.
    if not x.is_finite():
        return x
    exponent = Decimal(1) if step >= 1 else step.normalize()
    with localcontext() as ctx:
        ctx.prec = _grid_digits(x, step)
        return ((x / step).to_integral_value(rounding=rounding) * step).quantize(exponent)


def defaults_for(symbol: str, price: float | Decimal | None = None) -> Instrument:
    """Safe defaults when the exchange's filters are unknown: a price grid of about five significant digits and a
    lot worth at most about a hundredth of the quote currency, both derived from the observed ``price``; no minimum
    value. Without a price, fine grids (1e-8) that refuse nothing a real exchange would accept for its grid."""
    if price is None or not (float(price) > 0 and math.isfinite(float(price))):
        step = Decimal("1e-8")
        return Instrument.from_steps(symbol, step, step, from_exchange=False)
    magnitude = math.floor(math.log10(float(price)))
    price_decimals = min(MAX_DECIMALS, max(2, 4 - magnitude))  # 60,000.00 · 0.60123 · 0.0021345
    # A lot worth about a hundredth of a dollar-like quote; for a crypto quote (ETHBTC) the finest usual lot.
    qty_decimals = min(8, max(0, magnitude + 3)) if split_symbol(symbol)[1] in _FIAT_LIKE else 8
    return Instrument.from_steps(symbol, Decimal(1).scaleb(-price_decimals), Decimal(1).scaleb(-qty_decimals),
                                 from_exchange=False)


# ----- parsing (pure) -------------------------------------------------------------------------------------------
def _dec(v: Any, what: str) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise InstrumentError(f"{what} is {v!r}, not a number")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise InstrumentError(f"{what} is {v!r}, not a number") from None
    if not d.is_finite():
        raise InstrumentError(f"{what} is {v!r}, not a finite number")
    return d


def parse_binance(data: Any, symbols: Iterable[str]) -> tuple[dict[str, Instrument], dict[str, str]]:
    """``GET /api/v3/exchangeInfo`` -> (instruments found, {symbol: why not} for the others). Filters used:
    PRICE_FILTER tickSize, LOT_SIZE stepSize/minQty, NOTIONAL or MIN_NOTIONAL minNotional."""
    wanted = [s.upper() for s in symbols]
    if not isinstance(data, Mapping) or not isinstance(data.get("symbols"), list):
        why = "the answer has no list of symbols"
        return {}, dict.fromkeys(wanted, why)
    entries = {e.get("symbol"): e for e in data["symbols"] if isinstance(e, Mapping)}
    return collect_instruments(wanted, entries, _binance_entry)


def collect_instruments(wanted: Iterable[str], entries: Mapping[str, Any],
                        parse: Callable[[str, Any], Instrument]) -> tuple[dict[str, Instrument], dict[str, str]]:
    """Each wanted symbol's entry (keyed by our symbol) parsed, or why not: one bad entry costs only its symbol."""
    found: dict[str, Instrument] = {}
    problems: dict[str, str] = {}
    for symbol in wanted:
        entry = entries.get(symbol)
        if entry is None:
            problems[symbol] = "the exchange does not list it"
            continue
        try:
            found[symbol] = parse(symbol, entry)
        except InstrumentError as exc:
            problems[symbol] = str(exc)
    return found, problems


def _binance_entry(symbol: str, entry: Mapping[str, Any]) -> Instrument:
    filters = entry.get("filters")
    if not isinstance(filters, list):
        raise InstrumentError("no filters")
    by_type = {f.get("filterType"): f for f in filters if isinstance(f, Mapping)}
    price_f, lot_f = by_type.get("PRICE_FILTER"), by_type.get("LOT_SIZE")
    if price_f is None or lot_f is None:
        raise InstrumentError("PRICE_FILTER or LOT_SIZE filter missing")
    notional_f = by_type.get("NOTIONAL") or by_type.get("MIN_NOTIONAL") or {}
    tick = _dec(price_f.get("tickSize"), "tickSize")
    step = _dec(lot_f.get("stepSize"), "stepSize")
    min_qty = _dec(lot_f.get("minQty", "0"), "minQty")
    # Spot says minNotional; USD-M futures' MIN_NOTIONAL says notional.
    min_notional = _dec(notional_f.get("minNotional", notional_f.get("notional", "0")), "minNotional")
    base, quote = entry.get("baseAsset"), entry.get("quoteAsset")
    # Display decimals come from the grids, not from quotePrecision/baseAssetPrecision: those are the asset's
    # (8 for USDT), not the symbol's.
    return Instrument.from_steps(symbol, tick, step, min_qty=max(min_qty, step), min_notional=min_notional,
                                 base=base if isinstance(base, str) else None,
                                 quote=quote if isinstance(quote, str) else None)


def parse_coinbase(data: Any, symbol: str) -> Instrument:
    """Advanced Trade ``GET /api/v3/brokerage/market/products/{id}``: price_increment (or quote_increment),
    base_increment, base_min_size, quote_min_size."""
    if not isinstance(data, Mapping):
        raise InstrumentError("the answer is not an object")
    tick = _dec(data.get("price_increment") or data.get("quote_increment"), "price_increment")
    step = _dec(data.get("base_increment"), "base_increment")
    min_qty = _dec(data.get("base_min_size") or "0", "base_min_size")
    min_notional = _dec(data.get("quote_min_size") or "0", "quote_min_size")
    base, quote = data.get("base_currency_id"), data.get("quote_currency_id")
    return Instrument.from_steps(symbol, tick, step, min_qty=max(min_qty, step), min_notional=min_notional,
                                 base=base if isinstance(base, str) and base else None,
                                 quote=quote if isinstance(quote, str) and quote else None)


def parse_kraken(data: Any, symbols: Iterable[str]) -> tuple[dict[str, Instrument], dict[str, str]]:
    """REST ``GET /0/public/AssetPairs`` -> (instruments, {symbol: why not}). Pairs are matched by ``wsname``
    (``XBT/USD`` is the terminal's BTCUSD). Fields: tick_size (else 10^-pair_decimals), lot_decimals, ordermin,
    costmin."""
    wanted = [s.upper() for s in symbols]
    if not isinstance(data, Mapping) or not isinstance(data.get("result"), Mapping):
        errors = data.get("error") if isinstance(data, Mapping) else None
        why = f"the exchange answered {errors}" if errors else "the answer has no result"
        return {}, dict.fromkeys(wanted, why)
    pairs: dict[str, Mapping[str, Any]] = {}
    for entry in data["result"].values():
        if isinstance(entry, Mapping) and isinstance(entry.get("wsname"), str):
            base, _, quote = entry["wsname"].partition("/")
            pairs[_KRAKEN_ALIASES.get(base, base) + _KRAKEN_ALIASES.get(quote, quote)] = entry
    listed = {s: pairs[s.replace("/", "")] for s in wanted if s.replace("/", "") in pairs}
    return collect_instruments(wanted, listed, _kraken_entry)


def _kraken_entry(symbol: str, entry: Mapping[str, Any]) -> Instrument:
    pair_decimals = _int(entry.get("pair_decimals"), "pair_decimals")
    lot_decimals = _int(entry.get("lot_decimals"), "lot_decimals")
    tick = (_dec(entry["tick_size"], "tick_size") if entry.get("tick_size") is not None
            else Decimal(1).scaleb(-pair_decimals))
    step = Decimal(1).scaleb(-lot_decimals)
    return Instrument.from_steps(symbol, tick, step, min_qty=max(_dec(entry.get("ordermin", "0"), "ordermin"), step),
                                 min_notional=_dec(entry.get("costmin", "0"), "costmin"))


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_DECIMALS:
        raise InstrumentError(f"{what} is {v!r}, not a number of decimals")
    return v


# ----- the registry the terminal uses ---------------------------------------------------------------------------
@dataclass
class Instruments:
    """Every symbol's instrument: the exchange's when it was loaded, else safe defaults from its first price.
    ``problems`` holds one message per symbol left on defaults, for the trader."""

    loaded: dict[str, Instrument] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    # (tick, lot) for a symbol neither loaded nor priced yet; None: fine 1e-8 grids (see ``defaults_for``).
    fallback_steps: tuple[Decimal, Decimal] | None = None
    _defaults: dict[str, Instrument] = field(default_factory=dict)

    @classmethod
    def of(cls, *instruments: Instrument) -> Instruments:
        return cls(loaded={i.symbol: i for i in instruments})

    def get(self, symbol: str) -> Instrument:
        s = symbol.upper()
        inst = self.loaded.get(s) or self._defaults.get(s)
        if inst is not None:
            return inst
        if self.fallback_steps is not None:
            return Instrument.from_steps(s, *self.fallback_steps, from_exchange=False)
        return defaults_for(s)

    def __getitem__(self, symbol: str) -> Instrument:
        return self.get(symbol)

    def observe_price(self, symbol: str, price: float | Decimal) -> None:
        """The first price of a symbol without exchange filters fixes its defaults (once: a grid that moved with
        the price would put working orders off it)."""
        s = symbol.upper()
        if s not in self.loaded and s not in self._defaults:
            self._defaults[s] = defaults_for(s, price)

    def failed(self, symbols: Iterable[str], why: str) -> None:
        for s in symbols:
            s = s.upper()
            self.problems[s] = f"instrument filters for {s} could not be loaded: {why}; using safe defaults"
            log.warning("%s", self.problems[s])

    def add(self, found: Mapping[str, Instrument], problems: Mapping[str, str]) -> None:
        self.loaded.update(found)
        for s in found:
            self.problems.pop(s, None)
        for s, why in problems.items():
            self.failed([s], why)


# ----- loading (I/O) --------------------------------------------------------------------------------------------
async def load_instruments(client: httpx.AsyncClient, exchange: str, symbols: list[str],
                           rest_base: str | None = None) -> Instruments:
    """The exchange's filters for ``symbols``. Never raises for a bad answer or a network failure: the symbols
    concerned are in ``problems`` and use safe defaults. ``exchange`` is "binance" (also the built-in exchange,
    which serves Binance's exchangeInfo at ``rest_base``), "coinbase" or "kraken"."""
    import json

    import httpx

    result = Instruments()
    try:
        if exchange in ("binance", "binance-futures"):
            if rest_base is None:
                raise InstrumentError("no REST endpoint")
            if exchange == "binance":
                resp = await client.get(f"{rest_base.rstrip('/')}/api/v3/exchangeInfo",
                                        params={"symbols": json.dumps(symbols, separators=(",", ":"))})
            else:  # USD-M futures list every contract (no symbols filter), in the same shape
                resp = await client.get(f"{rest_base.rstrip('/')}/fapi/v1/exchangeInfo")
            resp.raise_for_status()
            result.add(*parse_binance(resp.json(), symbols))
        elif exchange == "coinbase":
            from app.market.adapters.coinbase import to_product

            for symbol in symbols:
                try:
                    url = (f"{rest_base.rstrip('/')}/api/v3/brokerage/market/products/{to_product(symbol)}"
                           if rest_base else COINBASE_PRODUCT_URL.format(product_id=to_product(symbol)))
                    resp = await client.get(url)
                    resp.raise_for_status()
                    result.add({symbol: parse_coinbase(resp.json(), symbol)}, {})
                except (InstrumentError, ValueError) as exc:
                    result.failed([symbol], str(exc))
        elif exchange == "kraken":
            url = f"{rest_base.rstrip('/')}/0/public/AssetPairs" if rest_base else KRAKEN_ASSET_PAIRS_URL
            resp = await client.get(url)
            resp.raise_for_status()
            result.add(*parse_kraken(resp.json(), symbols))
        else:
            raise InstrumentError(f"unknown exchange {exchange!r}")
    except httpx.HTTPStatusError as exc:
        result.failed([s for s in symbols if s.upper() not in result.loaded],
                      f"the exchange answered HTTP {exc.response.status_code}")
    except (httpx.HTTPError, InstrumentError, ValueError) as exc:
        result.failed([s for s in symbols if s.upper() not in result.loaded], str(exc) or type(exc).__name__)
    return result
