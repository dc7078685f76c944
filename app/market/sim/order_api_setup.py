"""The built-in exchange's trading side beside its market server: which keys and balances (``TradingSetup``), and
``TradingSide``, the OrderEngine and OrderApi fed by the market source's book (``levels()``) and by the trades the
server fans out, so that market orders walk the same book the terminal sees and resting orders fill when the market
trades through them.

aiohttp (the API's server) is imported only when a trading side starts: a market-only exchange does not pay for it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Container, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import orjson

from app.market.sim.orders import DEFAULT_FEE, OrderEngine, SymbolRules

if TYPE_CHECKING:
    from app.market.sim.order_api import OrderApi

KEY_ENV, SECRET_ENV = "TT_SIM_API_KEY", "TT_SIM_API_SECRET"
DEFAULT_QUOTE_BALANCE = Decimal(100_000)
DEFAULT_BASE_VALUE = Decimal(10_000)  # each symbol's base asset, worth about this much quote at the start
_ASSET_RE = re.compile(r"^[A-Z0-9]{1,20}$")
_MAX_BALANCE = Decimal(10) ** 15


@dataclass(frozen=True)
class TradingSetup:
    keys: Mapping[str, str]  # API key -> secret; each key is an account of its own
    balances: Mapping[str, Decimal] | None = None  # per asset, over the defaults (100,000 of the quote, some base)
    taker_fee: Decimal = DEFAULT_FEE
    maker_fee: Decimal = DEFAULT_FEE


def parse_balances(text: str) -> dict[str, Decimal]:
    """``"USDT=100000,BTC=1"`` -> {"USDT": 100000, "BTC": 1}; ValueError naming what is wrong."""
    balances: dict[str, Decimal] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        asset, sep, amount = item.partition("=")
        asset = asset.strip().upper()
        if not sep or not _ASSET_RE.match(asset):
            raise ValueError(f"balance {item!r} is not ASSET=AMOUNT (for example USDT=100000)")
        try:
            value = Decimal(amount.strip())
        except InvalidOperation:
            raise ValueError(f"balance {item!r}: {amount.strip()!r} is not a number") from None
        if not value.is_finite() or not 0 <= value <= _MAX_BALANCE:
            raise ValueError(f"balance {item!r}: the amount must be between 0 and {_MAX_BALANCE:,}")
        balances[asset] = value
    return balances


def keys_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The one key pair the CLI trades with: never on the command line, where other users could read it."""
    key, secret = environ.get(KEY_ENV, "").strip(), environ.get(SECRET_ENV, "").strip()
    if not key or not secret:
        raise ValueError(f"--trading needs an API key pair in the environment: set {KEY_ENV} and {SECRET_ENV}")
    return {key: secret}


def _markets(source: Any) -> dict[str, Any]:
    markets = getattr(source, "markets", None)
    if markets is None and hasattr(source, "symbol_info"):
        markets = {source.symbol: source}
    if not markets or not hasattr(source, "levels"):
        raise ValueError(f"the built-in exchange trades only on synthetic markets, not on {source.label}")
    return dict(markets)


class _Wanted:
    """The streams the source must make: the clients' subscriptions plus the trades the trading side watches."""

    def __init__(self, subs: Container[str], extra: frozenset[str]) -> None:
        self.subs, self.extra = subs, extra

    def __contains__(self, stream: object) -> bool:
        return stream in self.extra or stream in self.subs


class TradingSide:
    def __init__(self, source: Any, setup: TradingSetup, host: str = "127.0.0.1", port: int = 0) -> None:
        if not setup.keys:
            raise ValueError("trading needs at least one API key")
        markets = _markets(source)
        self.symbol_infos = [m.symbol_info() for m in markets.values()]
        rules = [SymbolRules.from_symbol_info(info) for info in self.symbol_infos]
        self.engine = OrderEngine(rules, source, _wall_ms, setup.taker_fee, setup.maker_fee)
        balances = self._default_balances(source, rules)
        balances.update({a.upper(): Decimal(v) for a, v in (setup.balances or {}).items()})
        for key in setup.keys:
            self.engine.open_account(key, balances)
        self.keys = dict(setup.keys)
        self.host, self.port = host, port
        self.streams = frozenset(f"{symbol.lower()}@trade" for symbol in markets)
        self.api: OrderApi | None = None
        self.bad_frames = 0

    @staticmethod
    def _default_balances(source: Any, rules: list[SymbolRules]) -> dict[str, Decimal]:
        balances: dict[str, Decimal] = {}
        for r in rules:
            balances.setdefault(r.quote, DEFAULT_QUOTE_BALANCE)
            bids = source.levels(r.symbol, "bids", 1)
            base = r.floor_qty(DEFAULT_BASE_VALUE / bids[0][0]) if bids else r.min_qty
            balances.setdefault(r.base, max(base, r.min_qty))
        return balances

    def wanted(self, subs: Container[str]) -> Container[str]:
        return _Wanted(subs, self.streams)

    def on_frame(self, stream: str, payload: bytes) -> None:
        """A trade frame the server is fanning out (Binance's ``trade`` payload)."""
        try:
            trade = orjson.loads(payload)
            self.engine.on_trade(trade["s"], Decimal(trade["p"]), Decimal(trade["q"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, InvalidOperation):
            self.bad_frames += 1  # never from the synthetic markets; counted rather than stopping the pump

    @property
    def rest_url(self) -> str:
        return self.api.rest_url if self.api is not None else ""

    @property
    def ws_api_url(self) -> str:
        return self.api.ws_api_url if self.api is not None else ""

    async def start(self) -> None:
        from app.market.sim.order_api import OrderApi

        self.api = OrderApi(self.engine, self.keys, self.symbol_infos, self.host, self.port, _wall_ms)
        await self.api.start()

    async def stop(self) -> None:
        if self.api is not None:
            await self.api.stop()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000
