"""The desk puts every order on its instrument's grid before risk sees it, for the model and the trader alike: risk
judges what will really be sent, and a size rounding cannot save is refused in words naming what was asked."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.models import OrderOrigin, OrderRequest, OrderType, Side
from tests.trading.test_restore import NOW, trade_at, xrp_desk


@pytest.mark.asyncio
async def test_quantity_and_limit_price_are_rounded_before_risk_and_the_broker(tmp_path):
    desk = xrp_desk(tmp_path / "j.sqlite3", NOW)  # XRPUSDT: tick 0.0001, lot 0.1, minimum 1 XRP and 5 USDT
    try:
        trade_at(desk, 0.6, 1)
        # Off the lot and off the tick: risk alone would veto both ("not a multiple of the lot size").
        sent = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.LIMIT, D("10.37"),
                                                     limit_price=D("0.59017"), origin=OrderOrigin.MANUAL))
        assert sent.ok, sent.message
        # The confirmation says the order in words and where it went, not only its id.
        assert sent.message == f"PAPER BUY 10.3 XRPUSDT limit @ 0.5901 sent · order {sent.order_id}"
        order = desk.broker.get(sent.order_id)
        assert (order.request.qty, order.request.limit_price) == (D("10.3"), D("0.5901"))  # a buy never pays more
        assert desk.risk.vetoes == {}
        sell = await desk.submit_manual(OrderRequest("XRPUSDT", Side.SELL, OrderType.LIMIT, D("10.37"),
                                                     limit_price=D("0.61013")))
        assert desk.broker.get(sell.order_id).request.limit_price == D("0.6102")  # a sell never gets less
        # Rounding would leave nothing (or less than the minimum): refused as asked, never "quantity 0".
        small = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("0.05")))
        assert not small.ok and small.message == "risk: quantity 0.05 XRP is below the minimum 1 for XRPUSDT"
        rounded = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("10.05")))
        assert rounded.ok and desk.broker.get(rounded.order_id).request.qty == D("10.0")
    finally:
        desk.journal.close()
