"""A session task that dies is restarted (or stopped) and shown: the terminal never runs half-dead unnoticed."""

from __future__ import annotations

import pytest

from app import crash
from app.config import Settings
from app.session import Session
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow
from tests.conftest import wait_until


@pytest.fixture
def crash_reports(tmp_path):
    crash.reset_for_tests()
    reports = []
    crash.install_crash_handler(report_dir=tmp_path / "crashes", on_crash=reports.append)
    yield reports
    crash.install_crash_handler()
    crash.reset_for_tests()


@pytest.mark.asyncio
async def test_a_market_consumer_that_raises_is_restarted_counted_reported_and_shown_as_fault(
        qtbot, tmp_path, crash_reports):
    session = Session(Settings(sim_trades_per_s=200.0, history_bars=0, timeframe="1s", sim_process=False,
                               journal_path=tmp_path / "j.sqlite3"))
    on_market = session.desk.on_market
    calls = []

    def fails_once(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise ValueError("a market event the desk could not take")
        on_market(batch)

    session.desk.on_market = fails_once
    session.supervisor.backoff_s = 0.05  # the first restart comes quickly; the policy is the supervisor's own
    await session.start()
    window = MainWindow(session, BufferingHandler())
    qtbot.addWidget(window)
    try:
        window.show()
        await wait_until(lambda: session.supervisor.faults.get("market") is not None, what="the market task fault")
        # The restart comes after the supervisor's back-off. (The broker's task applies what waits on the market
        # subscription before each of its batches, so trades may be applied meanwhile: wait for the restart itself.)
        await wait_until(lambda: session.supervisor.faults["market"].restarts == 1, timeout=15,
                         what="the market task restarted")
        market = session.market["BTCUSDT"]
        trades = market.trades
        await wait_until(lambda: market.trades > trades + 5, timeout=15, what="trades applied after the restart")
        fault = session.supervisor.faults["market"]
        assert fault.restarts == 1 and not fault.stopped and fault.faults == 1
        assert session.task_faults == 1
        assert "ValueError" in fault.last_error
        window.bridge.tick()
        assert window.fault_label.isVisibleTo(window)
        # Running again: an amber note (short, beside the prices), the details in the tooltip.
        assert window.fault_label.text() == "market restarted ×1"
        assert window.fault_label.property("level") == "warn"
        assert "ValueError: a market event the desk could not take" in window.fault_label.toolTip()
        assert len(crash_reports) == 1 and "task market" in crash_reports[0].read_text(encoding="utf-8")
    finally:
        window.close()
        await session.stop()


@pytest.mark.asyncio
async def test_a_task_that_keeps_failing_is_stopped_and_shown_stopped(tmp_path, crash_reports):
    session = Session(Settings(history_bars=0, sim_process=False, journal_path=tmp_path / "j.sqlite3"))
    sup = session.supervisor
    sup.backoff_s, sup.max_restarts = 0.01, 2
    runs = []

    async def broken() -> None:
        runs.append(1)
        raise RuntimeError("always broken")

    sup.supervise("desk", broken)
    try:
        await wait_until(lambda: sup.faults.get("desk") is not None and sup.faults["desk"].stopped,
                         what="the desk task given up")
        assert len(runs) == 3 and sup.faults["desk"].restarts == 2 and session.task_faults == 3
        assert sup.faults["desk"].text == "desk stopped"
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_a_long_lived_task_that_returns_is_a_fault_too(tmp_path, crash_reports):
    """A loop that ends without an error leaves its part of the terminal just as dead as one that raised."""
    session = Session(Settings(history_bars=0, sim_process=False, journal_path=tmp_path / "j.sqlite3"))
    sup = session.supervisor

    async def quits() -> None:
        return None

    sup.supervise("desk", quits, restart=False)
    try:
        await wait_until(lambda: "desk" in sup.faults, what="the fault")
        assert sup.faults["desk"].stopped and "ended on its own" in sup.faults["desk"].last_error
        assert session.task_faults == 1
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_the_fault_label_is_red_while_a_part_is_down_amber_after_it_recovered_then_gone(qtbot, tmp_path):
    session = Session(Settings(history_bars=0, sim_process=False, journal_path=tmp_path / "j.sqlite3"))
    now = [1000.0]
    sup = session.supervisor
    sup.clock = lambda: now[0]
    window = MainWindow(session, BufferingHandler())
    qtbot.addWidget(window)
    try:
        window.show()
        label = window.fault_label
        sup.record_fault("feed", ConnectionError("reset by peer"), stopped=False, restarting=True)
        window.bridge.tick()
        assert label.isVisibleTo(window) and (label.text(), label.property("level")) == ("FAULT feed", "bad")
        sup.faults["feed"].restarts, sup.faults["feed"].down, sup.faults["feed"].recovered_at = 1, False, now[0]
        window.bridge.tick()
        assert (label.text(), label.property("level")) == ("feed restarted ×1", "warn")
        now[0] += 61  # a minute healthy: nothing left to say
        window.bridge.tick()
        assert not label.isVisibleTo(window)
        sup.record_fault("desk", RuntimeError("always broken"), stopped=True)
        now[0] += 3600
        window.bridge.tick()
        assert (label.text(), label.property("level")) == ("FAULT desk", "bad")  # stopped stays red
        assert "desk: stopped" in label.toolTip()
    finally:
        window.close()
        await session.stop()
