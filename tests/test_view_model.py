"""ViewModel on a real session (the built-in exchange on loopback, paper, a real journal file): every part of the
screen comes out of it as a frozen snapshot, without Qt, and it reads what the session really has."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from app.config import Settings
from app.models import FeedState, OrderOrigin, OrderRequest, OrderType, Side
from app.session import Session
from app.view.model import ViewModel
from tests.conftest import wait_until


def _frozen(snapshot) -> bool:
    try:
        setattr(snapshot, dataclasses.fields(snapshot)[0].name, None)
    except dataclasses.FrozenInstanceError:
        return True
    return False


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_every_panel_snapshot_comes_from_the_session(tmp_path):
    session = Session(Settings(symbol="BTCUSDT", symbols=["BTCUSDT", "ETHUSDT"], sim_process=False,
                               history_bars=0, decision_source="rules", sim_trades_per_s=50.0,
                               journal_path=tmp_path / "j.sqlite3"))
    await session.start()
    vm = ViewModel(session)
    try:
        await wait_until(lambda: session.feed.state is FeedState.LIVE
                         and all(session.market[s].last_trade is not None for s in session.symbols)
                         and vm.book("BTCUSDT").status == "SYNCED", timeout=20, what="both symbols trading, a book")

        watch = vm.watchlist()
        assert [r.symbol for r in watch.rows] == ["BTCUSDT", "ETHUSDT"]
        assert all(r.last != "—" for r in watch.rows)

        ladder = vm.book("BTCUSDT", depth=5)
        touch = vm.touch("BTCUSDT")
        assert touch.bid is not None and touch.ask is not None and touch.bid < touch.ask
        assert ladder.status == "SYNCED" and ladder.bids and ladder.asks, ladder.status_text
        assert ladder.bids[0].price == touch.bid and ladder.asks[-1].price == touch.ask

        assert vm.tape("ETHUSDT").rows, "the tape has the symbol's trades"
        # No await between: nothing traded, nothing changed in the book: the same snapshots, not rebuilt.
        assert vm.tape("ETHUSDT") is vm.tape("ETHUSDT") and vm.book("BTCUSDT", depth=5) is ladder
        session.market.apply([dataclasses.replace(session.market["ETHUSDT"].last_trade, trade_id=10**12)])
        assert vm.tape("ETHUSDT").rows[0].key == str(10**12), "a new trade makes a new snapshot"
        assert all(r.key for r in vm.tape("ETHUSDT").rows)

        # An order sent through the desk (the command side) shows in the blotter and as a working order.
        far = (touch.bid * Decimal("0.97")).quantize(Decimal("0.01"))
        result = await session.desk.submit_manual(OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT,
                                                                Decimal("0.001"), limit_price=far,
                                                                origin=OrderOrigin.MANUAL))
        assert result.ok, result.message
        working = vm.working_orders("BTCUSDT")
        assert len(working) == 1 and working[0].price_value == far
        assert vm.working_orders("ETHUSDT") == ()
        assert [r.order_id for r in vm.blotter().working] == [working[0].order_id]

        account = vm.account("BTCUSDT")
        assert account.rows

        for snapshot in (watch, ladder, vm.tape("BTCUSDT"), vm.blotter(), account):
            assert _frozen(snapshot), type(snapshot).__name__
    finally:
        await session.stop()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_the_status_bar_the_ticket_and_the_order_book_show_one_touch(tmp_path):
    session = Session(Settings(symbol="BTCUSDT", symbols=["BTCUSDT"], sim_process=False, history_bars=0,
                               decision_source="rules", sim_trades_per_s=50.0, journal_path=tmp_path / "j.sqlite3"))
    await session.start()
    vm = ViewModel(session)
    try:
        m = session.market["BTCUSDT"]
        await wait_until(lambda: vm.book("BTCUSDT").status == "SYNCED" and m.quote is not None
                         and m.last_trade is not None, timeout=20, what="a synced book, a quote and a trade")
        session.market["BTCUSDT"].quote = dataclasses.replace(session.market["BTCUSDT"].quote, bid=1.0, ask=2.0)
        bid, ask = vm.touch("BTCUSDT")  # from the local book, not the (here absurd) quote
        ladder = vm.book("BTCUSDT")
        assert (bid, ask) == (ladder.bids[0].price, ladder.asks[-1].price)
        text = " ".join(i.text for i in vm.status("BTCUSDT", 0.0).items)
        inst = session.desk.instruments.get("BTCUSDT")
        assert f"bid {inst.fmt_price(bid)}" in text and f"ask {inst.fmt_price(ask)}" in text
    finally:
        await session.stop()
