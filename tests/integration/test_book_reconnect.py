"""An exchange that restarts (same port, lower update ids) must not leave the terminal trading on the old book.

The terminal is pointed at a built-in exchange with ``ws_url`` / ``rest_url`` (``--ws-url`` / ``--rest-url``), as at
any other Binance endpoint. The exchange is stopped and another started on the same port whose book ids are far
lower and whose prices are half: every diff of the new exchange looks "stale" to a book that kept its old ids.
The new exchange holds its REST depth snapshot back until the test lets it go, so the test can look at the
terminal in between: the book must say RESYNCING, and a market order must not fill at the old book's prices.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Container
from decimal import Decimal
from typing import Any

import pytest

from app.config import Settings
from app.market.sim.server import ExchangeSimulator
from app.market.sim.synthetic import SyntheticMarket
from app.models import FeedState, OrderRequest, OrderType, Side
from app.session import Session
from tests.conftest import wait_until

OLD_PRICE, NEW_PRICE = 60_000.0, 30_000.0
OLD_FIRST_ID, NEW_FIRST_ID = 9_000_000, 1_000


class HeldSnapshots:
    """A market whose REST depth snapshots wait for ``release``: the window between reconnect and resync."""

    def __init__(self, market: SyntheticMarket) -> None:
        self.market = market
        self.markets = {market.symbol: market}  # exchangeInfo is served for it as for the market itself
        self.label, self.paced, self.wait_for_subscriber = market.label, market.paced, market.wait_for_subscriber
        self.finished = market.finished
        self.release = asyncio.Event()

    def serves(self, stream: str) -> bool:
        return self.market.serves(stream)

    def batches(self, wanted: Container[str]) -> AsyncIterator[list[Any]]:
        return self.market.batches(wanted)

    async def depth_snapshot(self, symbol: str, limit: int) -> dict[str, Any]:
        await self.release.wait()
        return await self.market.depth_snapshot(symbol, limit)

    async def klines(self, *args: Any) -> list[list[Any]]:
        return await self.market.klines(*args)


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_restarted_exchange_with_lower_ids_resyncs_the_book_and_nothing_fills_from_the_old_one(tmp_path):
    old = ExchangeSimulator(SyntheticMarket("BTCUSDT", OLD_PRICE, 40.0, seed=11, first_update_id=OLD_FIRST_ID))
    await old.start()
    session = Session(Settings(exchange="binance", symbol="BTCUSDT", ws_url=old.ws_url, rest_url=old.rest_url,
                               history_bars=5, journal_path=tmp_path / "j.sqlite3"))
    new: ExchangeSimulator | None = None
    await session.start()
    try:
        book = session.desk.books["BTCUSDT"]
        await wait_until(lambda: book.is_valid and book.last_update_id >= OLD_FIRST_ID and book.diffs_applied > 0,
                         timeout=20, what="a book synced with the first exchange")
        await wait_until(lambda: session.market["BTCUSDT"].trades > 0, timeout=20, what="trades over --ws-url")
        assert book.best_bid()[0] > 0.9 * OLD_PRICE

        await old.stop()  # the exchange goes away...
        await wait_until(lambda: not book.is_valid, timeout=10, what="the book invalidated by the disconnect")
        held = HeldSnapshots(SyntheticMarket("BTCUSDT", NEW_PRICE, 40.0, seed=12, first_update_id=NEW_FIRST_ID))
        new = ExchangeSimulator(held, port=old.port)  # ...and comes back on the same port, ids restarted
        await new.start()

        def new_market_seen() -> bool:
            q, last = session.market["BTCUSDT"].quote, session.desk.last_price("BTCUSDT")
            return (session.feed.state is FeedState.LIVE and q is not None and q.ask < 0.6 * OLD_PRICE
                    and last is not None and last < Decimal(0.6 * OLD_PRICE))

        await wait_until(new_market_seen, timeout=30, what="trades and quotes from the restarted exchange")
        assert not book.is_valid and book.status == "RESYNCING"  # no snapshot from the new exchange yet

        order = await session.desk.broker.submit(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01")))
        await wait_until(lambda: any(f.order_id == order.id for f in session.desk.fills) or not order.status.is_open,
                         timeout=10, what="the market order to be handled")
        fills = [f for f in session.desk.fills if f.order_id == order.id]
        assert fills, "the order should fill from the new exchange's quote"
        assert all(f.price < Decimal(0.6 * OLD_PRICE) for f in fills), "filled at the old exchange's prices"

        held.release.set()
        await wait_until(lambda: book.is_valid and book.last_update_id < OLD_FIRST_ID and book.diffs_applied > 0,
                         timeout=20, what="the book resynced from the new exchange's snapshot")
        assert book.best_bid()[0] < 0.6 * OLD_PRICE < OLD_PRICE
    finally:
        await session.stop()
        if new is not None:
            await new.stop()
        await old.stop()
