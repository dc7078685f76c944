"""restore(journal): the risk state a restart takes back, decided from the journal's last kill / resume / state
event; and the summary a fault test or the chaos script compares."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from app.market.instruments import Instrument, Instruments
from app.models import Fill, Liquidity, Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Quote, Side, Trade
from app.trading.broker import PaperBroker
from app.trading.desk import TradingDesk
from app.trading.journal import Journal
from app.trading.portfolio import Portfolio
from app.trading.proposals import ProposalBook
from app.trading.restore import restore, summarize_journal
from app.trading.risk import RiskLimits, RiskManager, RiskState
from tests.conftest import wait_until

DAY = 86_400_000
NOW = 1_723_075_200_000 + 10 * 3_600_000  # 10:00 UTC
ARGS = dict(starting_cash=D("1000"), symbols=["BTCUSDT"], daily_loss_limit=D("50"), now_ms=NOW)


@pytest.mark.parametrize(
    ("events", "state"),
    [
        ([], RiskState.ACTIVE),
        ([("KILL", "kill_switch", NOW - 5)], RiskState.HALTED),
        ([("KILL", "kill_switch", NOW - 5), ("VETO", "HALTED", NOW - 4)], RiskState.HALTED),
        ([("KILL", "kill_switch", NOW - 5), ("RESUME", "resume", NOW - 4)], RiskState.ACTIVE),
        ([("STATE", "REDUCING", NOW - 5)], RiskState.REDUCING),  # the loss limit latched today
        ([("STATE", "REDUCING", NOW - DAY)], RiskState.ACTIVE),  # yesterday's limit: a new day, a new limit
        ([("STATE", "REDUCING", NOW - 5), ("RESUME", "resume", NOW - 4)], RiskState.ACTIVE),
    ],
)
def test_risk_state_from_the_last_control_event(tmp_path: Path, events: list[tuple[str, str, int]],
                                                state: RiskState) -> None:
    with Journal(tmp_path / "j.sqlite3") as j:
        for kind, code, ms in events:
            j.record_risk_event(ms, kind, code, "test")
        assert restore(j, **ARGS).risk_state is state  # type: ignore[arg-type]


def test_summary_of_a_journal_is_plain_json_values(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        req = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.5"), limit_price=D("99.5"),
                           origin=OrderOrigin.MANUAL)
        j.record_order(Order("L", req, OrderStatus.PARTIALLY_FILLED, created_ms=NOW - 10, updated_ms=NOW - 9))
        j.record_fill(Fill("F", "L", "BTCUSDT", Side.BUY, D("0.25"), D("99.5"), D("0.02"), Liquidity.MAKER, NOW - 9))
        j.record_risk_event(NOW - 1, "KILL", "kill_switch", "halt")
    assert summarize_journal(path, **ARGS) == {  # type: ignore[arg-type]
        "positions": {"BTCUSDT": {"qty": "0.25", "avg_price": "99.50000000", "realized_pnl": "-0.02000000"}},
        "cash": "975.10500000",  # 1000 - 0.25 * 99.5 - 0.02
        "open_orders": ["L"],
        "risk_state": "HALTED",
    }


# ----- the desk journals every change of risk state, whatever began it ------------------------------------------

XRP = Instrument.from_steps("XRPUSDT", D("0.0001"), D("0.1"), min_qty=D("1"), min_notional=D("5"))


def xrp_desk(path: Path, now_ms: int) -> TradingDesk:
    instruments = Instruments.of(XRP)
    return TradingDesk(
        broker=PaperBroker(submit_latency_s=0.001, instruments=instruments, clock_ms=lambda: now_ms),
        risk=RiskManager(RiskLimits(daily_loss_limit=D("50")), instruments=instruments),
        portfolio=Portfolio(starting_cash=D("1000")), journal=Journal(path),
        proposals=ProposalBook(instruments=instruments, wall_ms=lambda: now_ms),
        symbols=["XRPUSDT"], wall_ms=lambda: now_ms)


def trade_at(desk: TradingDesk, price: float, seq: int) -> None:
    batch = [Trade("XRPUSDT", price, 10.0, Side.BUY, seq, NOW, 0),
             Quote("XRPUSDT", price - 0.0001, 1e6, price, 1e6, seq, NOW, 0)]
    desk.on_market(batch)
    desk.broker.on_market(batch)  # the session gives the paper broker its own share


@pytest.mark.asyncio
async def test_a_loss_limit_reached_inside_an_order_check_survives_a_restart_after_the_price_bounced(tmp_path):
    path = tmp_path / "j.sqlite3"
    desk = xrp_desk(path, NOW)
    try:
        trade_at(desk, 0.6, 1)
        assert (await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("1000")))).ok
        await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == D("1000"), what="the fill")
        trade_at(desk, 0.5, 2)  # a 100 USDT loss, beyond the 50 limit; no clock tick in between
        refused = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("10")))
        assert not refused.ok and desk.risk.state is RiskState.REDUCING  # latched by the order check itself
        trade_at(desk, 0.6, 3)  # the price bounces back before the terminal stops
        desk.tick()
        assert desk.risk.state is RiskState.REDUCING
    finally:
        desk.close()
        desk.journal.close()
    with Journal(path) as j:  # the restart: the latched limit is not forgotten because the loss shrank
        restored = restore(j, starting_cash=D("1000"), symbols=["XRPUSDT"], daily_loss_limit=D("50"), now_ms=NOW)
    assert restored.risk_state is RiskState.REDUCING
    again = xrp_desk(path, NOW)
    try:
        again.resume_from(restored)
        assert again.risk.state is RiskState.REDUCING
        again.resume()  # the trader resumes: still breached? no, the day's PnL is back above the limit
        assert again.risk.state is RiskState.ACTIVE
    finally:
        again.journal.close()
    with Journal(path) as j:
        assert restore(j, **ARGS).risk_state is RiskState.ACTIVE  # type: ignore[arg-type]


@pytest.mark.parametrize("final", [RiskState.HALTED, RiskState.ACTIVE])
@pytest.mark.asyncio
async def test_the_kill_switch_and_a_resume_are_followed_by_the_state_they_set(tmp_path, final):
    path = tmp_path / "j.sqlite3"
    desk = xrp_desk(path, NOW)
    try:
        await desk.kill_switch()
        if final is RiskState.ACTIVE:
            desk.resume()
    finally:
        desk.journal.close()
    with Journal(path) as j:
        assert restore(j, **ARGS).risk_state is final  # type: ignore[arg-type]
        assert j.restart_records().risk_control.kind == "STATE"  # type: ignore[union-attr]


# ----- open orders at restart: paper cancels what cannot resume, a live broker is handed every one -----------------


def journal_with_open_orders(path: Path) -> None:
    with Journal(path) as j:
        market = OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, D("0.5"), origin=OrderOrigin.MANUAL)
        elsewhere = OrderRequest("ETHUSDT", Side.SELL, OrderType.LIMIT, D("1"), limit_price=D("3000"),
                                 origin=OrderOrigin.MANUAL)
        limit = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.5"), limit_price=D("99"),
                             origin=OrderOrigin.MANUAL)
        for oid, req in (("P1", market), ("P2", elsewhere), ("P3", limit)):
            j.record_order(Order(oid, req, OrderStatus.NEW, created_ms=NOW - 10, updated_ms=NOW - 10))
        # The crash came between P1's first fill and its order update: the row still says NEW, nothing filled.
        j.record_fill(Fill("PF7", "P1", "BTCUSDT", Side.BUY, D("0.2"), D("100"), D("0.02"), Liquidity.TAKER,
                           NOW - 9))


def test_paper_cancels_the_market_order_in_flight_and_the_symbol_no_longer_traded(tmp_path: Path) -> None:
    journal_with_open_orders(tmp_path / "j.sqlite3")
    with Journal(tmp_path / "j.sqlite3") as j:
        r = restore(j, **ARGS)  # type: ignore[arg-type]
    assert [o.id for o in r.resumed_orders] == ["P3"]
    assert {o.id: o.status for o in r.canceled_orders} == {"P1": OrderStatus.CANCELED, "P2": OrderStatus.CANCELED}


def test_live_hands_every_open_order_to_the_broker_as_its_journaled_fills_have_it(tmp_path: Path) -> None:
    journal_with_open_orders(tmp_path / "j.sqlite3")
    with Journal(tmp_path / "j.sqlite3") as j:
        r = restore(j, **ARGS, reconcile=True)  # type: ignore[arg-type]
    assert [o.id for o in r.resumed_orders] == ["P1", "P2", "P3"] and r.canceled_orders == []
    in_flight = r.resumed_orders[0]
    assert (in_flight.status, in_flight.filled_qty, in_flight.avg_price, in_flight.fees) == (
        OrderStatus.PARTIALLY_FILLED, D("0.2"), D("100"), D("0.02"))
    assert r.fill_ids == ["PF7"] and r.order_ids == ["P1", "P2", "P3"]
    assert "3 open orders to be settled with the exchange" in r.notes


@pytest.mark.asyncio
async def test_the_restored_broker_is_told_every_journaled_id(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal_with_open_orders(path)
    with Journal(path) as j:
        r = restore(j, starting_cash=D("1000"), symbols=["XRPUSDT"], daily_loss_limit=D("50"), now_ms=NOW)
    desk = xrp_desk(path, NOW)
    try:
        desk.resume_from(r)
        trade_at(desk, 0.6, 1)
        sent = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("10")))
        assert sent.ok and sent.order_id == "P4"
        await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == D("10"), what="the fill")
        assert [f.id for f in desk.broker.fills] == ["PF8"]  # numbered after every id the journal used
    finally:
        desk.journal.close()
