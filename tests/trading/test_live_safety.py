"""Live safety at start, without Qt: auto-approve in live only from this run's command line; one label (the broker's
own); a journal belongs to one account (stamped; another account's is refused); the broker's market never walks a
book older than the trade, and one failing event does not drop its batch. On the built-in exchange (in-process,
its trading API on loopback) and real SQLite."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal as D

import pytest

from app.config import Settings
from app.models import BookUpdate, OrderRequest, OrderStatus, OrderType, Quote, Side, Trade
from app.session import STREAM_DOWN_SHOWN_S, Session
from app.trading.journal import AccountStamp, Journal, JournalError
from app.trading.journal_owner import PAPER, live_stamp
from app.trading.live_start import open_live
from tests.conftest import wait_until

SYMBOL = "BTCUSDT"


def settings(tmp_path, **kw) -> Settings:
    return Settings(**{"symbols": [SYMBOL], "sim_process": False, "sim_trades_per_s": 100.0, "history_bars": 0,
                       "journal_path": tmp_path / "journal.sqlite3", "live_trading": True, "decision_source": "rules",
                       **kw})


async def yes(_account, _label) -> bool:
    return True


# ----- auto-approve ---------------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_the_settings_files_auto_approve_does_not_carry_into_live(tmp_path):
    s = settings(tmp_path, auto_approve=True)
    start = await open_live(s, yes)  # no --auto-approve on this run's command line
    assert start.live, start.reason
    session = Session(s, live=start)
    try:
        assert session.is_live and session.desk.proposals.auto_approve is False
        assert any("Auto-approve is off in live trading unless --auto-approve" in text
                   for _ms, _level, text in session.desk.messages)
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_auto_approve_in_live_only_from_this_runs_flag_and_paper_keeps_the_setting(tmp_path):
    s = settings(tmp_path, auto_approve=False)
    start = await open_live(s, yes, auto_approve=True)
    session = Session(s, live=start)
    try:
        assert session.is_live and session.desk.proposals.auto_approve is True
    finally:
        await session.stop()
    paper = Session(settings(tmp_path / "p", live_trading=False, auto_approve=True))
    try:
        assert not paper.is_live and paper.desk.proposals.auto_approve is True
    finally:
        await paper.stop()


# ----- one label -------------------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_the_session_shows_the_brokers_own_label(tmp_path):
    start = await open_live(settings(tmp_path), yes)
    session = Session(settings(tmp_path), live=start)
    try:
        session.desk.broker.label = "LIVE · something the broker says"  # the one source, whatever it says
        assert session.broker_label == "LIVE · something the broker says"
    finally:
        await session.stop()


# ----- whose journal ---------------------------------------------------------------------------------------------

def test_a_paper_session_stamps_paper_on_an_unstamped_journal(tmp_path):
    Journal(tmp_path / "journal.sqlite3").close()  # as every journal before v5: never stamped

    async def run() -> None:
        session = Session(settings(tmp_path, live_trading=False))
        try:
            assert session.journal.account_stamp() == PAPER
        finally:
            await session.stop()

    asyncio.run(run())


@pytest.mark.asyncio
async def test_a_live_session_stamps_its_account_on_its_fresh_journal(tmp_path):
    start = await open_live(settings(tmp_path), yes)
    session = Session(settings(tmp_path), live=start)
    try:
        assert session.journal.account_stamp() == live_stamp(start.account)
        assert session.journal.account_stamp().exchange == "built-in"
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_a_paper_journal_given_with_live_keeps_the_terminal_in_paper_and_untouched(tmp_path):
    paper = Session(settings(tmp_path, live_trading=False))
    desk = paper.desk
    from tests.trading.test_live_start import Asked

    try:
        paper.bus.publish([snapshot(59999.0, 60000.0, 1), Trade(SYMBOL, 60000.0, 0.01, Side.SELL, 1, 0, 0)])
        paper._apply(paper._market_sub.drain())
        assert (await desk.submit_manual(OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, D("0.01")))).ok
        await wait_until(lambda: desk.portfolio.position(SYMBOL).qty == D("0.01"), what="the paper fill")
    finally:
        await paper.stop()
    path = tmp_path / "journal.sqlite3"
    asked = Asked(True)
    start = await open_live(settings(tmp_path), asked, journal_given=True)  # --journal journal.sqlite3 --live
    session = Session(settings(tmp_path), live=start)
    try:
        assert not start.live and not asked.shown  # refused before asking
        assert start.reason == ("The journal journal.sqlite3 belongs to paper trading, not to the built-in "
                                f"exchange's account {asked_account(start)}: its cash and positions are not this "
                                "account's, so leave out --journal or name a new file. Trading on PAPER.")
        assert not session.is_live and session.journal.path == path
        assert session.desk.portfolio.position(SYMBOL).qty == D("0.01")  # the paper position, still paper's
        assert session.journal.account_stamp() == PAPER
        assert not path.with_name("journal.previous.sqlite3").exists()  # never set aside
    finally:
        await session.stop()


def asked_account(start) -> str:
    """The run's masked key as the refusal names it: the exchange this run started knows its one key."""
    import re

    m = re.search(r"account (.+): its cash", start.reason)
    assert m, start.reason
    return m.group(1)


@pytest.mark.asyncio
async def test_an_unstamped_journal_with_orders_is_paper_and_not_taken_by_a_live_session(tmp_path):
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    from tests.trading.test_journal import order  # a v4-style journal: orders, no stamp

    j.record_order(order("o1", Side.BUY, "0.1"))
    j.close()
    start = await open_live(settings(tmp_path), yes, journal_given=True)
    try:
        assert not start.live
        assert start.reason.startswith("The journal journal.sqlite3 is a paper journal (it has orders and fills and "
                                       "no live account)"), start.reason
    finally:
        await start.exchange.stop()
    with Journal(path) as j2:
        assert j2.account_stamp() is None  # a refusal writes nothing


@pytest.mark.asyncio
async def test_a_paper_session_on_a_live_journal_is_refused_in_one_sentence(tmp_path):
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    j.stamp_account(AccountStamp("LIVE", "binance", True, "AbC1…x9Yz"))
    j.close()
    with pytest.raises(JournalError) as err:
        Session(settings(tmp_path, live_trading=False))
    assert str(err.value) == ("The journal journal.sqlite3 belongs to the Binance testnet account AbC1…x9Yz: a paper "
                              "session never trades on a live account's journal (name another with --journal).")


@pytest.mark.asyncio
async def test_a_live_journal_of_another_network_or_account_is_refused(tmp_path):
    from app.trading.journal_owner import live_refusal

    path = tmp_path / "journal-live-binance-testnet.sqlite"
    j = Journal(path)
    j.stamp_account(AccountStamp("LIVE", "binance", True, "AbC1…x9Yz"))
    j.close()
    assert live_refusal(path, AccountStamp("LIVE", "binance", True, "AbC1…x9Yz")) is None
    other = live_refusal(path, AccountStamp("LIVE", "binance", False, "AbC1…x9Yz"))
    assert other == ("The journal journal-live-binance-testnet.sqlite belongs to the Binance testnet account "
                     "AbC1…x9Yz, not to the Binance MAINNET account AbC1…x9Yz: its cash and positions are not this "
                     "account's, so leave out --journal or name a new file.")
    assert live_refusal(path, AccountStamp("LIVE", "binance", True, "ZZZZ…0000")) is not None
    assert live_refusal(path, AccountStamp("LIVE", "kraken", False, "AbC1…x9Yz")) is not None
    assert live_refusal(tmp_path / "none.sqlite", AccountStamp("LIVE", "kraken", False, "k")) is None


# ----- the broker's market ----------------------------------------------------------------------------------------

def snapshot(bid: float, ask: float, i: int) -> BookUpdate:
    return BookUpdate(SYMBOL, ((bid, 1.0), (bid - 1, 1.0)), ((ask, 1.0),), i, i, True, 0, 0)


@pytest.mark.asyncio
async def test_a_stop_triggered_by_a_trade_walks_the_book_published_before_that_trade(tmp_path):
    session = Session(settings(tmp_path, live_trading=False))
    task = None
    try:
        session.bus.publish([snapshot(59999.0, 60001.0, 1)])
        session._apply(session._market_sub.drain())  # the market task's work, as it would have done
        broker = session.paper_broker
        o = await broker.submit(OrderRequest(SYMBOL, Side.SELL, OrderType.STOP_MARKET, D("0.1"),
                                             stop_price=D("59000")))
        assert o.status is OrderStatus.NEW
        session._broker_sub.drain()
        # The book moves down, then a trade reaches the stop. The market task has not run yet: only the broker's.
        session.bus.publish([snapshot(58990.0, 58992.0, 2), Trade(SYMBOL, 59000.0, 0.01, Side.SELL, 7, 0, 0)])
        session._market_live.set()
        task = asyncio.create_task(session._run_broker())
        await wait_until(lambda: o.status is OrderStatus.FILLED, what="the stop to fill")
        assert {f.price for f in broker.fills if f.order_id == o.id} == {D("58990.00")}  # not 59999: the old book
    finally:
        if task is not None:
            task.cancel()
        await session.stop()


@pytest.mark.asyncio
async def test_the_broker_waits_for_the_market_to_be_live_before_it_fills(tmp_path):
    session = Session(settings(tmp_path, live_trading=False))
    task = asyncio.create_task(session._run_broker())
    try:
        session.bus.publish([Trade(SYMBOL, 59000.0, 0.01, Side.SELL, 7, 0, 0)])
        for _ in range(5):
            await asyncio.sleep(0)
        assert session._broker_sub.depth == 1  # held while history loads (the market's events are held too)
        session._market_live.set()
        await wait_until(lambda: session._broker_sub.depth == 0, what="the broker to take its batch")
    finally:
        task.cancel()
        await session.stop()


@pytest.mark.asyncio
async def test_one_failing_event_is_counted_and_the_rest_of_its_batch_still_fills(caplog):
    from app.market.book import OrderBook
    from app.trading.broker import MARKET_ERRORS_LOGGED, PaperBroker

    broker = PaperBroker(submit_latency_s=0.0)
    book = OrderBook(SYMBOL)
    book.apply(snapshot(58990.0, 58992.0, 1))
    broker.on_book(book)
    o = await broker.submit(OrderRequest(SYMBOL, Side.SELL, OrderType.STOP_MARKET, D("0.1"), stop_price=D("59000")))
    bad = Trade(SYMBOL, "not a price", 0.01, Side.SELL, 1, 0, 0)  # type: ignore[arg-type]
    good = Trade(SYMBOL, 59000.0, 0.01, Side.SELL, 2, 0, 0)
    with caplog.at_level(logging.ERROR, logger="app.trading.broker"):
        broker.on_market([bad] * (MARKET_ERRORS_LOGGED + 3) + [Quote(SYMBOL, 1.0, 1.0, 2.0, 1.0, 1, 0, 0), good])
    assert broker.market_errors == MARKET_ERRORS_LOGGED + 3
    assert len([r for r in caplog.records if "a market event failed" in r.getMessage()]) == MARKET_ERRORS_LOGGED
    assert o.status is OrderStatus.FILLED  # the trade after the failures still triggered the stop


# ----- the user stream on the status bar ---------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_the_user_stream_down_is_reported_after_a_few_seconds_and_cleared_when_up(tmp_path):
    from types import SimpleNamespace

    session = Session(settings(tmp_path, live_trading=False))
    paper = session.desk.broker
    stream = SimpleNamespace(stream_up=False)  # what the live broker says of its user stream
    session.desk.broker = stream
    try:
        assert session.user_stream_down_s(100.0) is None  # not started: nothing is meant to be up
        session._live_broker_started = True
        assert session.user_stream_down_s(100.0) is None  # just went down
        assert session.user_stream_down_s(100.0 + STREAM_DOWN_SHOWN_S) is None
        assert session.user_stream_down_s(107.0) == pytest.approx(7.0)
        stream.stream_up = True
        assert session.user_stream_down_s(108.0) is None
        stream.stream_up = False
        assert session.user_stream_down_s(109.0) is None  # down again: counted from now
        assert session.user_stream_down_s(113.0) == pytest.approx(4.0)
        session.desk.broker = paper
        assert session.user_stream_down_s(200.0) is None  # a paper broker has no user stream
    finally:
        session.desk.broker = paper
        await session.stop()


@pytest.mark.asyncio
async def test_the_live_brokers_faults_warnings_and_user_stream_reach_the_trader(tmp_path):
    import time

    start = await open_live(settings(tmp_path), yes)
    session = Session(settings(tmp_path), live=start)
    try:
        await session.start()
        broker = session.desk.broker
        await wait_until(lambda: broker.stream_up, timeout=15, what="the user stream")
        assert session.user_stream_down_s() is None

        async def boom() -> None:
            raise RuntimeError("a broker task failed")

        broker._spawn(boom(), "probe")  # any task of the broker that dies
        await wait_until(lambda: "live broker · probe" in session.supervisor.faults, what="the fault")
        status = session.supervisor.status()
        assert status.text == "FAULT live broker · probe" and status.level == "bad" and session.task_faults == 1
        broker.on_warning("The account holds less BTC than the journal says.")
        assert session.desk.messages[-1][1:] == ("warn", "The account holds less BTC than the journal says.")
        broker._set_stream(False)  # the stream dropped (the broker's own bookkeeping of it)
        now = time.monotonic()
        assert session.user_stream_down_s(now) is None
        assert session.user_stream_down_s(now + STREAM_DOWN_SHOWN_S + 2) == pytest.approx(STREAM_DOWN_SHOWN_S + 2)
    finally:
        await session.stop()
