"""The ccxt side of the live broker: building the client (endpoints, testnet, no margin/funding calls), symbols,
instrument filters from the exchange's markets, and exchange orders, trades and balances as exact values.

ccxt parses amounts to floats; money here is Decimal, so Binance's own strings (the raw answer ccxt keeps in
``info``) are read first and ccxt's floats only when an exchange gives nothing else (``Decimal(str(x))``, the float's
shortest repr). ccxt itself is imported inside ``make_client`` only: importing ccxt.pro costs about half a second.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from app.market.instruments import Instrument, InstrumentError, collect_instruments, parse_binance
from app.models import Side

BINANCE_LIKE = frozenset({"binance", "built-in"})  # the built-in exchange speaks Binance spot's API
CCXT_IDS = {"binance": "binance", "built-in": "binance", "coinbase": "coinbase", "kraken": "kraken"}
ZERO = Decimal(0)


class ClientSetupError(Exception):
    """The client cannot be built for this exchange / mode; the message is one sentence for the trader."""


@dataclass(frozen=True, slots=True)
class ExTrade:
    """One execution of an order at the exchange."""

    trade_id: str
    order_exchange_id: str | None
    client_id: str | None
    symbol: str  # ours ("BTCUSDT")
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str | None
    maker: bool
    ms: int


@dataclass(frozen=True, slots=True)
class ExOrder:
    """An order as the exchange reports it; ``status`` in Binance's words (NEW, PARTIALLY_FILLED, FILLED,
    CANCELED, REJECTED, EXPIRED, EXPIRED_IN_MATCH)."""

    exchange_id: str
    client_id: str | None
    symbol: str
    side: Side
    type: str  # LIMIT, MARKET, STOP_LOSS ...
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    filled: Decimal
    status: str
    ms: int
    trades: tuple[ExTrade, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED", "PENDING_NEW")


def make_client(exchange: str, api_key: str, secret: str, *, testnet: bool, rest: str | None, ws_api: str | None,
                timeout_ms: int = 10_000, recv_window_ms: int | None = None) -> Any:
    """A ccxt.pro client for spot trading. ``rest``/``ws_api`` (the built-in exchange on loopback) replace every
    URL of the client; any endpoint the built-in exchange does not serve then fails there, never on the internet."""
    import ccxt.pro as ccxtpro

    ccxt_id = CCXT_IDS.get(exchange)
    if ccxt_id is None:
        raise ClientSetupError(f"live trading does not support the exchange {exchange!r}")
    options: dict[str, Any] = {"defaultType": "spot"}
    if ccxt_id == "binance":
        options.update({
            "fetchCurrencies": False,  # sapi capital/config: a wallet call, not needed to trade spot
            "fetchMargins": False,  # sapi margin pairs
            "fetchMarkets": {"types": ["spot"]},  # no futures/options exchangeInfo
            "warnOnFetchOpenOrdersWithoutSymbol": False,
        })
        if recv_window_ms is not None:  # how long after its timestamp Binance still accepts a signed request
            options["recvWindow"] = recv_window_ms
    client = getattr(ccxtpro, ccxt_id)({
        "apiKey": api_key, "secret": secret, "enableRateLimit": True, "timeout": timeout_ms, "options": options,
    })
    client.decimal_to_precision = _own_decimal_context(client.decimal_to_precision)
    if rest is not None or ws_api is not None:
        if ccxt_id != "binance" or rest is None or ws_api is None:
            raise ClientSetupError("explicit endpoints are only for the built-in exchange (Binance's API): give both")
        _point_at(client, rest.rstrip("/"), ws_api)
    elif testnet:
        try:
            client.set_sandbox_mode(True)
        except Exception as exc:  # ccxt.NotSupported (or worse): the exchange has no test environment in ccxt
            raise ClientSetupError(f"{exchange.capitalize()} has no testnet that ccxt can reach: live trading there "
                                   "is on the real account only (turn the testnet setting off to use it)") from exc
    return client


def _own_decimal_context(fn: Any) -> Any:
    """ccxt's number formatter sets the calling thread's decimal context to ROUND_HALF_UP and traps Underflow, for
    good: every Decimal the terminal rounds or formats afterwards (prices on screen, fees, quantities) would follow
    ccxt's rules, and a tiny amount would raise. Run it in a context of its own."""
    @functools.wraps(fn)
    def formatted(*args: Any, **kwargs: Any) -> Any:
        with decimal.localcontext():
            return fn(*args, **kwargs)

    return formatted


def _point_at(client: Any, rest: str, ws_api: str) -> None:
    def redirect(node: Any, path: str) -> Any:
        if isinstance(node, str):
            return f"{rest}/_not_served/{path}"
        if isinstance(node, dict):
            return {k: redirect(v, f"{path}/{k}" if path else k) for k, v in node.items()}
        return node

    api = redirect(client.urls["api"], "")
    api["public"] = api["private"] = f"{rest}/api/v3"
    api.setdefault("ws", {}).setdefault("ws-api", {})["spot"] = ws_api
    client.urls["api"] = api
    client.urls.pop("test", None)  # set_sandbox_mode must never point it elsewhere


# ----- symbols and instruments --------------------------------------------------------------------------------------


def our_symbol(market: Mapping[str, Any]) -> str:
    """ccxt's "BTC/USDT" market as the terminal names it ("BTCUSDT")."""
    return f"{market['base']}{market['quote']}".upper()


def spot_markets(markets: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Our symbol -> ccxt market, spot only."""
    out: dict[str, Mapping[str, Any]] = {}
    for m in markets.values():
        if m.get("spot") and m.get("active") is not False:
            out.setdefault(our_symbol(m), m)
    return out


def instruments_from_markets(exchange: str, markets: Mapping[str, Mapping[str, Any]],
                             symbols: Iterable[str]) -> tuple[dict[str, Instrument], dict[str, str]]:
    """The exchange's filters for ``symbols`` (ours) from ccxt's loaded markets: Binance's raw filters exactly,
    other exchanges from ccxt's precision and limits."""
    wanted = [s.upper() for s in symbols]
    if exchange in BINANCE_LIKE:
        return parse_binance({"symbols": [m["info"] for s, m in markets.items() if s in wanted]}, wanted)
    return collect_instruments(wanted, markets, _from_ccxt_market)


def _from_ccxt_market(symbol: str, m: Mapping[str, Any]) -> Instrument:
    try:
        tick = _num(m["precision"].get("price"), "price precision")
        lot = _num(m["precision"].get("amount"), "amount precision")
        limits = m.get("limits") or {}
        min_qty = _opt((limits.get("amount") or {}).get("min")) or lot
        min_notional = _opt((limits.get("cost") or {}).get("min")) or ZERO
    except (KeyError, TypeError) as exc:
        raise InstrumentError(str(exc)) from None
    return Instrument.from_steps(symbol, tick, lot, min_qty=max(min_qty, lot), min_notional=min_notional,
                                 base=m.get("base"), quote=m.get("quote"))


def _num(v: Any, what: str) -> Decimal:
    d = _opt(v)
    if d is None or d <= 0:
        raise InstrumentError(f"{what} is {v!r}")
    return d


def _opt(v: Any) -> Decimal | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


# ----- orders, trades, balances -------------------------------------------------------------------------------------

_BINANCE_STATUSES = frozenset({"NEW", "PENDING_NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "PENDING_CANCEL",
                               "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"})
_UNIFIED_STATUS = {"closed": "FILLED", "canceled": "CANCELED", "expired": "EXPIRED", "rejected": "REJECTED"}


def _first(info: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        v = info.get(k)
        if v is not None and v != "":
            return v
    return None


def _dec(raw: Any, unified: Any = None) -> Decimal | None:
    """The exchange's own text when there is one, else ccxt's float through its shortest repr."""
    return _opt(raw) if raw is not None else _opt(unified)


def parse_trade(t: Mapping[str, Any], symbol: str, *, order: ExOrder | None = None) -> ExTrade:
    info = t.get("info") or {}
    side = _first(info, "S", "side") or t.get("side") or (order.side.value if order else None)
    if isinstance(info.get("isBuyer"), bool):
        side = "BUY" if info["isBuyer"] else "SELL"
    fee = t.get("fee") or {}
    maker = info.get("m", info.get("isMaker"))
    qty = _dec(_first(info, "l", "qty"), t.get("amount"))
    price = _dec(_first(info, "L", "price"), t.get("price"))
    if qty is None or price is None or side is None:
        raise ValueError(f"a trade without quantity, price or side: {t!r}")
    if qty <= 0 or price <= 0:  # applied as a fill it would turn the position the wrong way
        raise ValueError(f"a trade with quantity {qty} at price {price}: both must be positive")
    return ExTrade(
        trade_id=str(_first(info, "t", "tradeId", "id") or t.get("id")),
        order_exchange_id=str(_first(info, "i", "orderId") or t.get("order") or (order.exchange_id if order
                                                                                  else "")) or None,
        client_id=_first(info, "C", "c") or (order.client_id if order else None),
        symbol=symbol,
        side=Side(str(side).upper()),
        qty=qty,
        price=price,
        fee=_dec(_first(info, "n", "commission"), fee.get("cost")) or ZERO,
        fee_asset=_first(info, "N", "commissionAsset") or fee.get("currency"),
        maker=bool(maker) if maker is not None else t.get("takerOrMaker") == "maker",
        ms=int(_first(info, "T", "time") or t.get("timestamp") or (order.ms if order else 0)),
    )


def parse_order(o: Mapping[str, Any], symbol: str) -> ExOrder:
    info = o.get("info") or {}
    filled = _dec(_first(info, "z", "executedQty"), o.get("filled")) or ZERO
    status = _first(info, "X", "status")
    if status not in _BINANCE_STATUSES:  # another exchange's words: ccxt's unified status
        unified = o.get("status")
        status = _UNIFIED_STATUS.get(unified) or ("PARTIALLY_FILLED" if filled > 0 else "NEW")
    side = _first(info, "S", "side") or o.get("side")
    order = ExOrder(
        exchange_id=str(_first(info, "i", "orderId") or o.get("id")),
        client_id=o.get("clientOrderId") or _first(info, "C", "c", "clientOrderId"),
        symbol=symbol,
        side=Side(str(side).upper()),
        type=str(_first(info, "o", "type") or o.get("type") or "").upper(),
        qty=_dec(_first(info, "q", "origQty"), o.get("amount")) or ZERO,
        price=_positive(_dec(_first(info, "p", "price"), o.get("price"))),
        stop_price=_positive(_dec(_first(info, "P", "stopPrice"), o.get("triggerPrice"))),
        filled=filled,
        status=str(status),
        ms=int(_first(info, "T", "E", "updateTime", "transactTime", "time") or o.get("timestamp") or 0),
    )
    trades = tuple(parse_trade(t, symbol, order=order) for t in (o.get("trades") or []) if _has_trade_id(t))
    return dataclasses.replace(order, trades=trades)


def _has_trade_id(t: Mapping[str, Any]) -> bool:
    info = t.get("info") or {}
    return _first(info, "t", "tradeId", "id") is not None or t.get("id") is not None


def _positive(d: Decimal | None) -> Decimal | None:
    return d if d is not None and d > 0 else None


def balances_of(resp: Mapping[str, Any]) -> dict[str, Decimal]:
    """Free + locked per asset, non-zero only, exact when the exchange gives text (Binance's account)."""
    info = resp.get("info") or {}
    raw = info.get("balances") if isinstance(info, Mapping) else None
    out: dict[str, Decimal] = {}
    if isinstance(raw, list):
        for b in raw:
            total = (_opt(b.get("free")) or ZERO) + (_opt(b.get("locked")) or ZERO)
            if total != 0 and isinstance(b.get("asset"), str):
                out[b["asset"]] = total
        return out
    for asset, total in (resp.get("total") or {}).items():
        d = _opt(total)
        if d:
            out[asset] = d
    return out


def account_label(api_key: str, resp: Mapping[str, Any]) -> str:
    """The key masked ("AbC1…x9Yz") and the account's uid when the exchange gives one."""
    masked = f"{api_key[:4]}…{api_key[-4:]}" if len(api_key) > 12 else "…" + api_key[-2:]
    info = resp.get("info") or {}
    uid = info.get("uid") if isinstance(info, Mapping) else None
    return f"{masked} · uid {uid}" if uid not in (None, "", 0) else masked
