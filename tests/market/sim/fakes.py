"""A small fixed book and BTCUSDT rules for the trading side's tests, and the built-in exchange's trading API on
loopback over them (one account), shared by its own tests and the live broker's."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal as D
from typing import Any

from app.market.sim.order_api import OrderApi
from app.market.sim.orders import OrderEngine, SymbolRules
from tests.conftest import wait_until

SYMBOL_INFO: dict[str, Any] = {
    "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT", "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "10000000.00000000", "tickSize": "0.01"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00000000", "stepSize": "0.00001"},
        {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True},
    ]}


class FakeBook:
    """asks 100.00 x 1, 101.00 x 2; bids 99.00 x 1, 98.00 x 2 unless given."""

    def __init__(self, asks: list[tuple[str, str]] | None = None, bids: list[tuple[str, str]] | None = None) -> None:
        self.sides = {
            "asks": [(D(p), D(q)) for p, q in (asks if asks is not None else [("100", "1"), ("101", "2")])],
            "bids": [(D(p), D(q)) for p, q in (bids if bids is not None else [("99", "1"), ("98", "2")])],
        }

    def levels(self, symbol: str, side: str, depth: int) -> list[tuple[D, D]]:
        return list(self.sides[side][:depth]) if symbol == "BTCUSDT" else []


class Clock:
    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


def ccxt_client(rest_url: str, ws_api_url: str, key: str, secret: str) -> Any:
    """ccxt.pro's binance pointed at the built-in exchange: spot only, no sapi (margin, currencies) calls."""
    import copy

    import ccxt.pro as ccxtpro

    ex = ccxtpro.binance({"apiKey": key, "secret": secret, "options": {
        "defaultType": "spot", "fetchCurrencies": False, "fetchMargins": False, "fetchMarkets": {"types": ["spot"]},
    }})
    urls = copy.deepcopy(ex.urls)
    urls["api"]["public"] = urls["api"]["private"] = rest_url + "/api/v3"
    urls["api"]["ws"]["ws-api"]["spot"] = ws_api_url
    ex.urls = urls
    return ex


def now_ms() -> int:
    return time.time_ns() // 1_000_000


BALANCES = {"USDT": D(10_000), "BTC": D(1)}


@contextlib.asynccontextmanager
async def order_api(key: str, secret: str, balances: Mapping[str, D] = BALANCES, *,
                    symbol_info: dict[str, Any] = SYMBOL_INFO, **kw: Any) -> AsyncIterator[OrderApi]:
    """The trading API serving one account over the fixed book, with ``symbol_info``'s rules (BTCUSDT's)."""
    engine = OrderEngine([SymbolRules.from_symbol_info(symbol_info)], FakeBook(), now_ms)
    engine.open_account(key, dict(balances))
    async with OrderApi(engine, {key: secret}, [symbol_info], **kw) as server:
        yield server


async def until(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    await wait_until(pred, timeout=timeout, what=what)
