"""The kill switch closes whatever is open, however small: risk and the broker share one rule for closing orders."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.models import OrderRequest, OrderType, Side
from app.trading.risk import RiskState
from tests.conftest import wait_until
from tests.trading.test_restore import NOW, trade_at, xrp_desk


@pytest.mark.asyncio
async def test_the_kill_switch_flattens_a_position_below_the_minimum_quantity(tmp_path):
    desk = xrp_desk(tmp_path / "j.sqlite3", NOW)  # XRPUSDT: minimum 1 XRP and 5 USDT, lot 0.1
    try:
        trade_at(desk, 0.6, 1)
        assert (await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("10")))).ok
        await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == D("10"), what="the buy")
        assert (await desk.submit_manual(OrderRequest("XRPUSDT", Side.SELL, OrderType.MARKET, D("9.5")))).ok
        await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == D("0.5"), what="dust left")
        result = await desk.kill_switch()
        assert result.ok, result.message
        await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == 0, what="the dust flattened")
        assert desk.risk.state is RiskState.HALTED
        # Only closing is exempt: an order that opens a position of that size is still refused.
        desk.resume()
        refused = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("0.5")))
        assert not refused.ok and "below the minimum 1" in refused.message
    finally:
        desk.journal.close()
