"""A restarted terminal carries on: positions, open orders and fill history come back from the journal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.config import Settings
from app.models import OrderOrigin, OrderRequest, OrderType, Side
from app.session import Session
from tests.conftest import wait_until


async def started(journal) -> Session:
    session = Session(Settings(sim_trades_per_s=100.0, history_bars=30, journal_path=journal))
    await session.start()
    desk = session.desk
    await wait_until(lambda: desk.last_price("BTCUSDT") is not None and desk.books["BTCUSDT"].has_snapshot,
                     timeout=15, what="prices and a book")
    return session


@pytest.mark.asyncio
async def test_positions_open_orders_and_fills_survive_a_restart(tmp_path):
    journal = tmp_path / "journal.sqlite3"
    first = await started(journal)
    try:
        desk = first.desk
        result = await desk.submit_manual(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"),
                                                       origin=OrderOrigin.MANUAL))
        assert result.ok, result.message
        await wait_until(lambda: desk.portfolio.position("BTCUSDT").qty == Decimal("0.01"), what="the fill")
        below = (desk.last_price("BTCUSDT") * Decimal("0.98")).quantize(Decimal("0.01"))
        result = await desk.submit_manual(OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.002"),
                                                       limit_price=below, origin=OrderOrigin.MANUAL))
        assert result.ok, result.message
        await wait_until(lambda: len(desk.broker.open_orders("BTCUSDT")) == 1, what="a resting order")
        position = desk.portfolio.position("BTCUSDT")
        cash = desk.portfolio.cash
        resting = desk.broker.open_orders("BTCUSDT")[0]
        fills = list(desk.fills)
    finally:
        await first.stop()

    second = await started(journal)
    try:
        desk = second.desk
        again = desk.portfolio.position("BTCUSDT")
        assert (again.qty, again.avg_price, again.realized_pnl) == (position.qty, position.avg_price,
                                                                     position.realized_pnl)
        assert desk.portfolio.cash == cash
        (restored,) = desk.broker.open_orders("BTCUSDT")
        assert restored.id == resting.id and restored.request.limit_price == below
        assert [f.id for f in desk.fills] == [f.id for f in fills]
        # New ids never collide with the previous session's.
        result = await desk.submit_manual(OrderRequest("BTCUSDT", Side.SELL, OrderType.MARKET, Decimal("0.01"),
                                                       origin=OrderOrigin.MANUAL))
        assert result.ok and result.order_id not in {resting.id, *(f.order_id for f in fills)}
        await wait_until(lambda: desk.portfolio.position("BTCUSDT").qty == 0, what="flat again")
    finally:
        await second.stop()
