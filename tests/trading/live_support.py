"""What the LiveBroker tests share: the built-in exchange's trading API on loopback (one account over a fixed book),
a real SQLite journal, brokers wired to both as the desk wires them, and waiting on what the exchange reports.
The fixtures reach the tests through this folder's conftest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.market.instruments import Instruments
from app.market.sim.order_api import OrderApi
from app.models import OrderRequest, OrderType, Side
from app.trading.journal import Journal
from app.trading.live_broker import LiveBroker, LiveEndpoints
from tests.market.sim.fakes import now_ms, order_api, until

__all__ = ["KEY", "SECRET", "SYM", "api", "broker", "journal", "make_broker", "now_ms", "req", "started",
           "stream_caught_up", "until"]

KEY, SECRET = "live-test-key-0001", "live-test-secret-0001"
SYM = "BTCUSDT"


@pytest_asyncio.fixture
async def api() -> AsyncIterator[OrderApi]:
    # asks 100 x 1, 101 x 2; bids 99 x 1, 98 x 2; the account holds 10,000 USDT and 1 BTC
    async with order_api(KEY, SECRET) as server:
        yield server


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    with Journal(tmp_path / "journal-live.sqlite3") as j:
        yield j


def make_broker(api: OrderApi, journal: Journal, *, secret: str = SECRET, key: str = KEY,
                prefix: str = "T", ws_api: str | None = None, symbols: tuple[str, ...] = (SYM,),
                **kw: Any) -> LiveBroker:
    broker = LiveBroker(exchange="built-in", api_key=key, secret=secret, testnet=False, instruments=Instruments(),
                        endpoints=LiveEndpoints(api.rest_url, ws_api or api.ws_api_url), id_prefix=prefix,
                        journal_hook=journal.record_reconciliation, symbols=list(symbols), **kw)
    broker.add_listener(journal.record_order, journal.record_fill)  # what the desk does: journal first
    return broker


async def started(b: LiveBroker) -> LiveBroker:
    await b.connect()
    await b.start()
    return b


@pytest_asyncio.fixture
async def broker(api: OrderApi, journal: Journal) -> AsyncIterator[LiveBroker]:
    b = await started(make_broker(api, journal))
    try:
        yield b
    finally:
        await b.aclose()


def req(side: Side, qty: str, price: str | None = None, **kw: Any) -> OrderRequest:
    if price is None:
        return OrderRequest(SYM, side, OrderType.MARKET, D(qty), **kw)
    return OrderRequest(SYM, side, OrderType.LIMIT, D(qty), limit_price=D(price), **kw)


async def stream_caught_up(broker: LiveBroker, api: OrderApi) -> None:
    """Every trade the exchange made for this account has come through the user stream too."""
    trades = len(api.engine.my_trades(KEY, SYM))
    await until(lambda: broker.counters.stream_trades >= trades, "the user stream")
    for _ in range(5):
        await asyncio.sleep(0)
