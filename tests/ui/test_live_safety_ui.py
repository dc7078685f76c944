"""The trader sees the same label everywhere (the broker's own: start dialog, status bar, title, smoke-test JSON), sees
AUTO-APPROVE ON beside LIVE when orders go without asking (said in the start dialog too), is asked before turning
auto-approve on during a live session, and sees the user stream down in red. Offscreen, on the built-in exchange
(in-process, trading API on loopback)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest
from PySide6 import QtWidgets

from app.__main__ import smoke_counters
from app.config import Settings
from app.session import Session
from app.trading.live_broker import LiveAccount
from app.trading.live_start import open_live
from app.ui import live_status
from app.ui.live_confirm import AUTO_OFF, AUTO_ON, confirm_live
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow
from tests.conftest import wait_until

ACCOUNT = LiveAccount("binance", True, "AbC1…x9Yz", {"USDT": D("10000")})


def settings(tmp_path) -> Settings:
    return Settings(symbols=["BTCUSDT"], sim_process=False, sim_trades_per_s=100.0, history_bars=0,
                    journal_path=tmp_path / "journal.sqlite3", live_trading=True, decision_source="rules")


async def shown_dialog(auto: bool) -> tuple[str, QtWidgets.QMessageBox, asyncio.Future]:
    shown: list[QtWidgets.QMessageBox] = []
    task = asyncio.ensure_future(confirm_live(ACCOUNT, "LIVE · Binance testnet", opened=shown.append,
                                              auto_approve=auto))
    await wait_until(lambda: shown, what="the dialog")
    return f"{shown[0].text()}\n{shown[0].informativeText()}", shown[0], task


@pytest.mark.asyncio
async def test_the_start_dialog_says_whether_auto_approve_sends_without_asking(qtbot):
    text, box, task = await shown_dialog(True)
    assert AUTO_ON in text and AUTO_ON == ("Auto-approve is ON: proposals within its limits are sent without "
                                           "asking.")
    box.defaultButton().click()
    assert await task is False
    text, box, task = await shown_dialog(False)
    assert AUTO_OFF in text and AUTO_ON not in text
    box.defaultButton().click()
    await task


async def live_window(qtbot, tmp_path, *, auto: bool):
    """A live session on the built-in exchange, confirmed through the real dialog (its text kept)."""
    seen: list[str] = []

    async def confirm(account, label) -> bool:
        def click(box) -> None:
            seen.append(box.windowTitle() + "\n" + box.text() + "\n" + box.informativeText())
            box.go_button.click()

        return await confirm_live(account, label, opened=click, auto_approve=auto)

    start = await open_live(settings(tmp_path), confirm, auto_approve=auto)
    assert start.live, start.reason
    session = Session(settings(tmp_path), live=start)
    window = MainWindow(session, BufferingHandler())
    qtbot.addWidget(window)
    window.show()
    return session, window, seen[0]


@pytest.mark.asyncio
async def test_dialog_status_bar_title_and_json_show_the_brokers_own_label(qtbot, tmp_path):
    session, window, dialog_text = await live_window(qtbot, tmp_path, auto=True)
    try:
        label = session.desk.broker.label
        assert label.startswith("LIVE · ")
        assert f"Broker: {label}\n" in dialog_text and dialog_text.startswith(f"Trade live? {label}\n")
        assert window.mode_label.text() == label
        assert window.windowTitle().endswith(f"— {label}")
        counters = smoke_counters(session, window)
        assert counters["broker_label"] == label and counters["broker"] == "LIVE"
        # Auto-approve was on this run's command line: said in the dialog, shown red beside LIVE.
        assert AUTO_ON in dialog_text and counters["auto_approve"] is True
        assert window.auto_label.isVisible() and window.auto_label.text() == "AUTO-APPROVE ON"
        assert window.auto_label.property("level") == "bad"
        # Right after LIVE, before the market data source.
        qtbot.waitUntil(lambda: window.mode_label.x() < window.auto_label.x() < window.source_label.x())
    finally:
        window.close()
        await session.stop()


@pytest.mark.asyncio
async def test_turning_auto_approve_on_during_a_live_session_asks_first(qtbot, tmp_path):
    session, window, dialog_text = await live_window(qtbot, tmp_path, auto=False)
    proposals = session.desk.proposals
    try:
        assert AUTO_OFF in dialog_text and not proposals.auto_approve and not window.auto_label.isVisible()
        window.auto_action.trigger()  # Trading > Auto-approve
        box = window._dialogs["auto approve"]
        assert isinstance(box, QtWidgets.QMessageBox) and box.isVisible()
        assert not proposals.auto_approve and not window.auto_action.isChecked()  # nothing until answered
        assert session.broker_label in box.windowTitle() and "without asking" in box.text()
        assert box.defaultButton().text() == "Keep it off" and box.escapeButton() is box.defaultButton()
        box.defaultButton().click()
        assert not proposals.auto_approve and not window.auto_action.isChecked()
        window.auto_action.trigger()
        window._dialogs["auto approve"].yes_button.click()
        assert proposals.auto_approve and window.auto_action.isChecked() and window.auto_label.isVisible()
        window.auto_action.trigger()  # off needs no question
        assert "auto approve" not in window._dialogs
        assert not proposals.auto_approve and not window.auto_label.isVisible()
    finally:
        window.close()
        await session.stop()


@pytest.mark.asyncio
async def test_a_paper_window_turns_auto_approve_on_without_a_question(qtbot, tmp_path):
    session = Session(Settings(journal_path=tmp_path / "j.sqlite3", history_bars=0))
    window = MainWindow(session, BufferingHandler())
    qtbot.addWidget(window)
    try:
        window.auto_action.trigger()
        assert session.desk.proposals.auto_approve and "auto approve" not in window._dialogs
        assert not window.auto_label.isVisible()  # the red badge is for live orders
    finally:
        window.close()
        await session.stop()


@pytest.mark.asyncio
async def test_the_user_stream_down_shows_red_on_the_status_bar(qtbot, tmp_path, monkeypatch):
    session, window, _ = await live_window(qtbot, tmp_path, auto=False)
    try:
        window.refresh_slow(0.0)
        assert not window.stream_label.isVisible()
        monkeypatch.setattr(session, "user_stream_down_s", lambda: 7.2)
        window.refresh_slow(0.0)
        assert window.stream_label.isVisible() and window.stream_label.text() == "user stream down 7s"
        assert window.stream_label.property("level") == "bad"
        monkeypatch.setattr(session, "user_stream_down_s", lambda: None)
        window.refresh_slow(0.0)
        assert not window.stream_label.isVisible()
    finally:
        window.close()
        await session.stop()


def test_the_stream_words():
    assert live_status.stream_text(None) == "" and live_status.stream_text(12.6) == "user stream down 13s"
