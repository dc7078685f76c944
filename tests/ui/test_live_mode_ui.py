"""The trader sees where orders go: the status bar, the window title, the order ticket, each proposal's Approve, the
price-moved question and the settings say LIVE (in red) or PAPER. And the confirmation before live trading names
the exchange, the account and testnet or MAINNET, with "Stay in paper" as its default."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest
from PySide6 import QtWidgets

from app.config import Settings
from app.llm.schema import Action, DecisionBody
from app.session import Session
from app.trading.live_broker import LiveAccount
from app.trading.live_start import open_live
from app.ui.live_confirm import GO, STAY, confirm_live
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow
from app.ui.settings_dialog import SettingsDialog
from tests.conftest import wait_until
from tests.trading.test_auto_approve import scripted, state

ACCOUNT = LiveAccount("binance", True, "AbC1…x9Yz", {"USDT": D("10000"), "BTC": D("1")})


@pytest.mark.asyncio
async def test_the_confirmation_names_exchange_account_and_network_and_stays_in_paper_by_default(qtbot):
    shown: list[QtWidgets.QMessageBox] = []
    task = asyncio.ensure_future(confirm_live(ACCOUNT, "LIVE · Binance testnet", opened=shown.append))
    await wait_until(lambda: shown, what="the dialog")
    box = shown[0]
    assert box.isVisible() and box.isModal()
    text = f"{box.text()}\n{box.informativeText()}"
    assert "Binance testnet" in text and "AbC1…x9Yz" in text and "play money" in text and "USDT 10000" in text
    assert box.defaultButton().text() == STAY and box.escapeButton().text() == STAY
    box.defaultButton().click()  # Enter
    assert await task is False

    main = LiveAccount("binance", False, "AbC1…x9Yz", {})
    task = asyncio.ensure_future(confirm_live(main, "LIVE · Binance MAINNET", opened=shown.append))
    await wait_until(lambda: len(shown) == 2, what="the second dialog")
    assert "Binance MAINNET (REAL MONEY)" in shown[1].text()
    assert shown[1].go_button.text() == GO
    shown[1].go_button.click()
    assert await task is True


@pytest.mark.asyncio
async def test_a_paper_window_says_paper_calmly(qtbot, tmp_path):
    session = Session(Settings(journal_path=tmp_path / "j.sqlite3", history_bars=0))
    window = MainWindow(session, BufferingHandler())
    qtbot.addWidget(window)
    try:
        assert window.mode_label.text() == "PAPER" and window.mode_label.property("mode") == "PAPER"
        assert window.windowTitle().endswith("— PAPER")
        panel = window.trading_panel
        assert panel.submit.text() == "Send PAPER order" and panel.ticket.title() == "Order ticket · PAPER"
        assert panel.kill_button.text() == "KILL SWITCH (PAPER)"
        assert panel.flatten_button.text() == "Flatten position (PAPER)"
    finally:
        window.close()
        await session.stop()


@pytest.mark.asyncio
async def test_a_live_window_says_live_in_red_on_the_status_bar_ticket_cards_and_dialogs(qtbot, tmp_path):
    settings = Settings(symbols=["BTCUSDT"], sim_process=False, sim_trades_per_s=100.0, history_bars=0,
                        journal_path=tmp_path / "journal.sqlite3", live_trading=True, decision_source="rules")

    async def yes(_account, _label) -> bool:
        return True

    start = await open_live(settings, yes)
    assert start.live, start.reason
    session = Session(settings, live=start)
    window = MainWindow(session, BufferingHandler())
    qtbot.addWidget(window)
    try:
        await session.start()
        window.show()
        label = "LIVE · built-in exchange"
        assert window.mode_label.text() == label and window.mode_label.property("mode") == "LIVE"
        assert window.mode_label.isVisible()
        tip = window.mode_label.toolTip()
        assert "account" in tip and "journal-live-built-in.sqlite" in tip
        assert window.windowTitle().endswith(f"— {label}")
        panel = window.trading_panel
        assert panel.submit.text() == "Send LIVE order" and panel.ticket.title() == f"Order ticket · {label}"
        assert panel.kill_button.text() == "KILL SWITCH (LIVE)"
        assert "at the exchange" in panel.kill_button.toolTip()
        # A proposal's card: Approve says LIVE.
        p = session.desk.on_decision(scripted("BTCUSDT", DecisionBody(action=Action.BUY, size_pct=1, confidence=0.6,
                                                                      rationale="t")), state("BTCUSDT"))
        window.decisions_panel.refresh()
        card = window.decisions_panel.card_for(p.id)
        assert card.buttons["Approve"].text() == "Approve LIVE" and card.buttons["Approve"].property("mode") == "LIVE"
        # The price-moved question names the mode and does not send on Enter.
        from app.trading.desk import ActionResult

        window.proposal_actions._after(ActionResult(False, "price moved 2%", needs_confirmation=True), p, None)
        box = window.proposal_actions.dialog
        assert box.windowTitle() == "Price moved · LIVE" and "as a LIVE order" in box.text()
        assert box.defaultButton() is box.button(QtWidgets.QMessageBox.StandardButton.No)
        box.button(QtWidgets.QMessageBox.StandardButton.No).click()
        # Settings: this run's mode, beside the live settings.
        dialog = SettingsDialog(Settings(), tmp_path / "settings.toml", None, window, mode_text=session.broker_label)
        qtbot.addWidget(dialog)
        assert dialog.mode_label.text() == label and dialog.mode_label.property("mode") == "LIVE"
        assert "BINANCE_API_KEY" in dialog.exchange_key_labels["binance"].text()
    finally:
        window.close()
        await session.stop()
