"""The Orders dock's read model, without Qt: what a trader relies on in the blotter. A position that goes flat stays
listed with its realised PnL; realised PnL per UTC day and per symbol adds up; every price in its symbol's precision;
order ids whole; and after a restart (a real journal file, a real paper desk) the history is still there."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from pathlib import Path

import pytest

from app.market.instruments import Instrument, Instruments
from app.models import Fill, Liquidity, Order, OrderRequest, OrderStatus, OrderType, Position, Quote, Side, Trade
from app.trading.broker import PaperBroker
from app.trading.desk import TradingDesk
from app.trading.journal import HistoryRecords, Journal
from app.trading.portfolio import Portfolio
from app.trading.proposals import ProposalBook
from app.trading.restore import restore
from app.trading.risk import RiskLimits, RiskManager
from app.view.blotter import DeskBlotter, RowCache, TradeHistory, blotter_view, time_text
from tests.conftest import wait_until

UTC = dt.UTC
DAY = 86_400_000
NOW = 1_723_075_200_000 + 10 * 3_600_000  # Thu 2024-08-08 10:00 UTC
XRP = Instrument.from_steps("XRPUSDT", D("0.0001"), D("0.1"), min_qty=D("1"), min_notional=D("5"))
BTC = Instrument.from_steps("BTCUSDT", D("0.01"), D("0.00001"))
INSTRUMENTS = Instruments.of(XRP, BTC)


def fill(fid: str, symbol: str, side: Side, qty: str, price: str, ms: int, fee: str = "0", oid: str = "O1",
         fee_asset: str | None = None) -> Fill:
    return Fill(fid, oid, symbol, side, D(qty), D(price), D(fee), Liquidity.TAKER, ms, fee_asset=fee_asset)


def history(*fills: Fill, since_ms: int = NOW - 30 * DAY, start=None) -> TradeHistory:
    return TradeHistory.from_records(HistoryRecords(since_ms, start or {}, list(fills), []))


def view(h: TradeHistory | None = None, *, positions=(), orders=(), working=(), fills=(), marks=None):
    marks = marks or {}
    return blotter_view(working=working, orders=orders, fills=fills, positions=positions, mark=marks.get,
                        instruments=INSTRUMENTS, now_ms=NOW, history=h, tz=UTC)


def test_a_position_that_goes_flat_stays_listed_with_its_realised_pnl():
    h = history(fill("F1", "XRPUSDT", Side.BUY, "1000", "0.6000", NOW - 60_000, fee="0.06"),
                fill("F2", "XRPUSDT", Side.SELL, "400", "0.6100", NOW - 30_000, fee="0.02"),
                fill("F3", "XRPUSDT", Side.SELL, "600", "0.6200", NOW - 10_000, fee="0.03"))
    v = view(h, positions=[Position("XRPUSDT")])  # the portfolio holds nothing any more
    assert v.positions == ()
    [closed] = v.closed
    # 400 x 0.01 + 600 x 0.02 = 16.00, minus 0.11 of fees
    assert (closed.symbol, closed.side, closed.qty, closed.entry, closed.exit) == (
        "XRPUSDT", "LONG", "1,000.0", "0.6000", "0.6160")
    assert (closed.realised, closed.realised_sign, closed.fees, closed.fills) == ("+15.89", 1, "0.11", 3)
    assert (closed.opened, closed.closed) == ("09:59:00", "09:59:50")
    assert closed.key == "XRPUSDT:F1"
    assert [(r.label, r.realised, r.closed, r.fills) for r in v.days] == [("2024-08-08", "+15.89 USDT", 1, 3)]
    assert [(r.label, r.realised) for r in v.symbols] == [("XRPUSDT", "+15.89 USDT")]
    assert "+15.89 USDT" in v.history_line and "1 position closed" in v.history_line


def test_a_flip_closes_one_position_and_opens_the_other_at_the_fill_price():
    h = history(fill("F1", "BTCUSDT", Side.BUY, "0.1", "60000", NOW - 60_000),
                fill("F2", "BTCUSDT", Side.SELL, "0.3", "61000", NOW - 30_000))
    short = Position("BTCUSDT", D("-0.2"), D("61000"))
    v = view(h, positions=[short], marks={"BTCUSDT": D("60500")})
    [closed] = v.closed
    assert (closed.side, closed.qty, closed.realised) == ("LONG", "0.10000", "+100.00")
    [pos] = v.positions
    assert (pos.side, pos.qty, pos.avg, pos.mark) == ("SHORT", "-0.20000", "61,000.00", "60,500.00")
    assert (pos.unrealised, pos.unrealised_sign, pos.realised) == ("+100.00", 1, "0.00")
    assert pos.opened == "09:59:30"


def test_realised_pnl_per_utc_day_and_per_symbol_adds_up():
    yday = NOW - DAY
    h = history(fill("F1", "XRPUSDT", Side.BUY, "100", "0.5000", yday, fee="0.01"),
                fill("F2", "XRPUSDT", Side.SELL, "100", "0.5100", yday + 1000, fee="0.01"),   # +1.00 - 0.02
                fill("F3", "BTCUSDT", Side.SELL, "0.01", "60000", NOW - 5000, fee="0.6"),
                fill("F4", "BTCUSDT", Side.BUY, "0.01", "61000", NOW - 1000, fee="0.6"))      # -10.00 - 1.20
    v = view(h)
    assert [(r.key, r.realised, r.fees, r.closed, r.fills) for r in v.days] == [
        ("2024-08-08", "-11.20 USDT", "1.20 USDT", 1, 2), ("2024-08-07", "+0.98 USDT", "0.02 USDT", 1, 2)]
    assert [(r.key, r.realised, r.realised_sign) for r in v.symbols] == [
        ("BTCUSDT", "-11.20 USDT", -1), ("XRPUSDT", "+0.98 USDT", 1)]
    assert [r.symbol for r in v.closed] == ["BTCUSDT", "XRPUSDT"]  # newest first
    assert v.closed[0].side == "SHORT" and v.closed[1].closed == "Aug 07 10:00"  # another day: its date
    assert "-10.22 USDT" in v.history_line and "2 positions closed" in v.history_line


def test_a_position_held_before_the_history_starts_is_closed_from_the_balance_it_was_in():
    # The journal's last balance before the window held 500 XRP at 0.55; only the exit is in the window.
    h = history(fill("F9", "XRPUSDT", Side.SELL, "500", "0.6000", NOW - 1000), start={"XRPUSDT": (D("500"), D("0.55"))})
    [closed] = view(h).closed
    assert (closed.entry, closed.exit, closed.realised, closed.opened) == ("0.5500", "0.6000", "+25.00", "before")


def test_fills_are_taken_once_and_not_from_before_the_history():
    h = history(fill("F1", "XRPUSDT", Side.BUY, "100", "0.5", NOW - 1000))
    assert h.add([fill("F1", "XRPUSDT", Side.BUY, "100", "0.5", NOW - 1000)]) == 0  # the restored copy
    assert h.add([fill("OLD", "XRPUSDT", Side.SELL, "100", "0.5", NOW - 40 * DAY)]) == 0  # in the start already
    assert h.add([fill("F2", "XRPUSDT", Side.SELL, "100", "0.6", NOW)]) == 1
    assert [t.realised for t in h.closed] == [D("10.00000000")]


def test_orders_and_fills_newest_first_in_their_precision_with_whole_ids():
    long_id = "x-AITT-1723111200000-BTCUSDT-000042-entry"  # a live client order id is long: never cut
    req = OrderRequest("XRPUSDT", Side.BUY, OrderType.LIMIT, D("100"), limit_price=D("0.6011"))
    old = Order("P1-1", req, OrderStatus.FILLED, NOW - DAY, filled_qty=D("100"), avg_price=D("0.6011"))
    new = Order(long_id, OrderRequest("BTCUSDT", Side.SELL, OrderType.STOP_MARKET, D("0.001"),
                                      stop_price=D("59000.5")), OrderStatus.NEW, NOW - 1000)
    journal_copy = Order(long_id, new.request, OrderStatus.NEW, NOW - 1000)  # the live object goes first and wins
    journal_copy.status = OrderStatus.CANCELED
    coin = fill("F1", "BTCUSDT", Side.BUY, "0.001", "60000", NOW - 500, fee="0.00001", fee_asset="BTC")
    quote = fill("F0", "XRPUSDT", Side.BUY, "100", "0.6011", NOW - DAY, fee="0.06011")
    v = view(working=[new, old], orders=[new, old, journal_copy], fills=[quote, coin])
    assert [r.key for r in v.working] == [long_id]
    assert [r.order_id for r in v.orders] == [long_id, "P1-1"]
    assert v.orders[0].status == "NEW" and v.orders[0].working
    assert (v.orders[0].price, v.orders[0].qty, v.orders[0].type) == ("59,000.50", "0.00100", "STOP MKT")
    assert (v.orders[1].price, v.orders[1].avg, v.orders[1].filled, v.orders[1].time) == (
        "0.6011", "0.6011", "100.0", "Aug 07 10:00")
    assert v.working[0].id == long_id  # what cancel takes
    assert [(f.key, f.fee, f.liquidity) for f in v.fills] == [("F1", "0.00001 BTC", "TAKER"),
                                                              ("F0", "0.0601 USDT", "TAKER")]
    assert v.fills[0].time_utc == "2024-08-08 09:59:59 UTC"


def test_rows_are_reused_only_while_what_they_show_is_unchanged():
    # A rebuild after one fill formats that fill, not three hundred rows; but an order that changed, or a time whose
    # day has passed, is never shown as it was.
    a = Order("A", OrderRequest("XRPUSDT", Side.BUY, OrderType.LIMIT, D("100"), limit_price=D("0.6")),
              OrderStatus.NEW, NOW - 1000)
    b = Order("B", a.request, OrderStatus.FILLED, NOW - 2000, filled_qty=D("100"), avg_price=D("0.6"))
    cache = RowCache()

    def build(now_ms: int = NOW):
        return blotter_view(working=[a], orders=[a, b], fills=(), positions=(), mark=lambda s: None,
                            instruments=INSTRUMENTS, now_ms=now_ms, tz=UTC, cache=cache)

    first = build()
    a.status, a.filled_qty, a.avg_price = OrderStatus.PARTIALLY_FILLED, D("40"), D("0.6")  # in place, as brokers do
    second = build()
    assert second.orders[1] is first.orders[1]  # B: unchanged, reused
    assert (second.orders[0].status, second.orders[0].filled) == ("PARTIAL", "40.0")
    tomorrow = build(NOW + DAY)
    assert tomorrow.orders[1].time == "Aug 08 09:59"  # yesterday's order now says its date


def test_times_say_the_date_when_not_today():
    assert time_text(NOW, NOW, UTC) == "10:00:00"
    assert time_text(NOW - DAY, NOW, UTC) == "Aug 07 10:00"
    assert time_text(0, NOW, UTC) == ""


# ----- a real paper desk, a real journal file, a restart ----------------------------------------------------------
def xrp_desk(path: Path, now_ms: int) -> TradingDesk:
    instruments = Instruments.of(XRP)
    return TradingDesk(
        broker=PaperBroker(submit_latency_s=0.001, instruments=instruments, clock_ms=lambda: now_ms),
        risk=RiskManager(RiskLimits(daily_loss_limit=D("500")), instruments=instruments),
        portfolio=Portfolio(starting_cash=D("1000")), journal=Journal(path),
        proposals=ProposalBook(instruments=instruments, wall_ms=lambda: now_ms),
        symbols=["XRPUSDT"], wall_ms=lambda: now_ms)


def trade_at(desk: TradingDesk, price: float, seq: int, ms: int) -> None:
    batch = [Trade("XRPUSDT", price, 10.0, Side.BUY, seq, ms, 0),
             Quote("XRPUSDT", price - 0.0001, 1e6, price, 1e6, seq, ms, 0)]
    desk.on_market(batch)
    desk.broker.on_market(batch)


@pytest.mark.asyncio
async def test_after_a_restart_orders_fills_closed_positions_and_day_pnl_are_still_there(tmp_path: Path):
    path = tmp_path / "journal.sqlite3"
    desk = xrp_desk(path, NOW)
    try:
        trade_at(desk, 0.6, 1, NOW)
        assert (await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("1000")))).ok
        await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == D("1000"), what="the buy filled")
        trade_at(desk, 0.61, 2, NOW + 1000)
        assert (await desk.submit_manual(OrderRequest("XRPUSDT", Side.SELL, OrderType.MARKET, D("1000")))).ok
        await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == 0, what="the sell filled")
        rest = OrderRequest("XRPUSDT", Side.BUY, OrderType.LIMIT, D("100"), limit_price=D("0.6"))
        assert (await desk.submit_manual(rest)).ok  # rests below the market: resumed by the restart
        await wait_until(lambda: len(desk.broker.open_orders()) == 1, what="the limit order working")
        before = DeskBlotter.load(desk, tz=UTC).snapshot()
        assert len(before.orders) == 3 and len(before.fills) >= 2 and len(before.closed) == 1
    finally:
        desk.close()
        desk.journal.close()

    with Journal(path) as j:
        restored = restore(j, starting_cash=D("1000"), symbols=["XRPUSDT"], daily_loss_limit=D("500"),
                           now_ms=NOW + 60_000)
    again = xrp_desk(path, NOW + 60_000)
    try:
        again.resume_from(restored)
        again.fills = list(reversed(again.journal.recent_fills(1000)))  # as the session does
        assert [o.id for o in again.broker.orders] == [before.working[0].order_id]  # this run knows one order
        after = DeskBlotter.load(again, tz=UTC).snapshot()
    finally:
        again.journal.close()
    assert {r.order_id for r in after.orders} == {r.order_id for r in before.orders}
    assert [r.order_id for r in after.orders] == [r.order_id for r in before.orders]  # newest first, once each
    assert [r.key for r in after.working] == [r.key for r in before.working] and after.positions == ()
    assert [f.key for f in after.fills] == [f.key for f in before.fills]
    assert [(c.symbol, c.realised, c.qty) for c in after.closed] == [(c.symbol, c.realised, c.qty)
                                                                     for c in before.closed]
    assert after.closed[0].realised.startswith("+")  # bought at 0.6, sold at 0.61, less the paper fees
    assert [(d.key, d.realised, d.closed) for d in after.days] == [(d.key, d.realised, d.closed) for d in before.days]
    assert after.days[0].key == "2024-08-08" and after.days[0].closed == 1


# ----- review fixes: the account currency's precision, fill bursts, the history read off the loop ----------------
def test_the_history_line_totals_in_the_account_currencys_precision():
    fills = [fill("F1", "XRPUSDT", Side.BUY, "1", "0.60000000", NOW - 60_000),
             fill("F2", "XRPUSDT", Side.SELL, "1", "0.60012345", NOW - 30_000)]
    btc = TradeHistory.from_records(HistoryRecords(NOW - 30 * DAY, {}, fills, []), quote="BTC")
    v = view(btc)
    assert "+0.00012345 BTC" in v.history_line, v.history_line  # not "+0.00 BTC" for a real gain
    assert v.days[0].realised == "+0.00012345 BTC"


def paper_fill(i: int, ms: int) -> Fill:
    """A round trip of 10 XRP every two fills: bought at 0.6000, sold at 0.6010 (+0.01 each, no fee)."""
    buy = i % 2 == 0
    return fill(f"B{i}", "XRPUSDT", Side.BUY if buy else Side.SELL, "10", "0.6000" if buy else "0.6010", ms,
                oid=f"BO{i}")


def emit(desk: TradingDesk, i: int, ms: int) -> None:
    """What the paper broker does for a market order that fills: the order, then its fill, to its listeners."""
    f = paper_fill(i, ms)
    desk.broker._emit_order(Order(f.order_id, OrderRequest("XRPUSDT", f.side, OrderType.MARKET, f.qty),
                                  OrderStatus.NEW, created_ms=ms))
    desk.broker._emit_fill(f)


def test_a_burst_of_more_fills_than_the_desk_keeps_between_two_refreshes_is_all_counted(tmp_path: Path):
    """The desk keeps its newest 1,000 fills; 1,200 between two refreshes must all reach the day's and the
    symbol's totals and the closed positions (the blotter takes them from the broker's fill listener)."""
    desk = xrp_desk(tmp_path / "journal.sqlite3", NOW)
    try:
        blotter = DeskBlotter.load(desk, tz=UTC)
        assert blotter.snapshot().closed == ()
        for i in range(1200):  # the broker reports each fill to its listeners, the desk's first
            emit(desk, i, NOW + i)
        assert len(desk.fills) == 1000
        v = blotter.snapshot(NOW + 2000)
    finally:
        desk.journal.close()
    assert [(d.fills, d.closed, d.realised) for d in v.days] == [(1200, 600, "+6.00 USDT")]
    assert len(v.closed) == 300 and "600 positions closed" in v.history_line  # 300 rows shown, 600 counted


@pytest.mark.asyncio
@pytest.mark.parametrize("during", ["before the read", "after the read"])
async def test_the_history_is_read_off_the_loop_and_fills_during_the_load_count_once(tmp_path: Path, monkeypatch,
                                                                                     during: str):
    """``DeskBlotter.start`` returns at once (the History tab says it is loading) and reads the journal in a thread
    with a connection of its own; fills that arrive meanwhile are counted once whether or not the read saw them."""
    import threading

    import app.view.blotter as blotter_module
    from app.view.blotter import LOADING_LINE

    path = tmp_path / "journal.sqlite3"
    desk = xrp_desk(path, NOW)
    for i in range(40):  # an earlier session's 20 round trips, in the journal
        emit(desk, i, NOW - 3_600_000 + i)
    gate, readers = threading.Event(), []
    real = blotter_module.read_history

    def gated(*args, **kwargs):
        readers.append(threading.get_ident())
        if during == "before the read":
            assert gate.wait(10)
        records = real(*args, **kwargs)
        if during == "after the read":
            assert gate.wait(10)
        return records

    monkeypatch.setattr(blotter_module, "read_history", gated)
    try:
        blotter = DeskBlotter.start(desk, tz=UTC)
        first = blotter.snapshot()
        assert first.history_loading and first.history_line == LOADING_LINE and first.closed == ()
        for i in range(40, 44):  # two more round trips while the history loads
            emit(desk, i, NOW + i)
        assert blotter.snapshot().history_loading
        gate.set()
        await wait_until(lambda: not blotter.snapshot().history_loading, what="the history loaded")
        v = blotter.snapshot()
        emit(desk, 44, NOW + 100)
        emit(desk, 45, NOW + 101)
        after = blotter.snapshot()
    finally:
        desk.journal.close()
    assert readers and readers[0] != threading.get_ident(), "the journal was read on the loop thread"
    assert sum(d.fills for d in v.days) == 44 and sum(d.closed for d in v.days) == 22
    assert "22 positions closed" in v.history_line and not v.history_loading
    assert sum(d.fills for d in after.days) == 46 and len(after.closed) == 23
