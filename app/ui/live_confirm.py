"""The confirmation before live trading: a modal dialog naming the broker by its own label (exchange, testnet or
MAINNET: the same words as the status bar and the title), the account, and whether auto-approve is on, with "Stay in
paper" as the default button (Enter or Escape keep paper). Opened with ``open()`` and awaited through a future: a
nested ``exec()`` loop inside the asyncio loop breaks qasync."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtWidgets

if TYPE_CHECKING:
    from app.trading.live_broker import LiveAccount

STAY = "Stay in paper"
GO = "Trade LIVE"
AUTO_ON = "Auto-approve is ON: proposals within its limits are sent without asking."
AUTO_OFF = "Auto-approve is off: every order waits for your approval."


def balances_text(balances: dict[str, Decimal], most: int = 6) -> str:
    shown = sorted(balances.items(), key=lambda kv: kv[0])[:most]
    text = ", ".join(f"{asset} {amount.normalize():f}" for asset, amount in shown)
    more = len(balances) - len(shown)
    return text + (f" and {more} more" if more > 0 else "") if text else "no balances"


class LiveConfirmDialog(QtWidgets.QMessageBox):
    def __init__(self, account: LiveAccount, label: str, parent: QtWidgets.QWidget | None = None, *,
                 auto_approve: bool = False) -> None:
        super().__init__(parent)
        self.setObjectName("liveConfirm")
        self.setIcon(QtWidgets.QMessageBox.Icon.Warning)
        self.setWindowTitle(f"Trade live? {label}")
        self.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        where = label.removeprefix("LIVE · ")  # the broker's label is the one name for it everywhere
        if account.exchange == "built-in":
            where, money = f"the {where}", "its play account for this run"
        else:
            money = "play money" if account.testnet else "REAL MONEY"
        auto = AUTO_ON if auto_approve else AUTO_OFF
        self.setText(f"Approved orders will be sent to {where} ({money}).\n{auto}")
        self.setInformativeText(
            f"Broker: {label}\nAccount: {account.account}\nBalances: {balances_text(account.balances)}\n\n"
            f"The status bar, the order ticket and every proposal will say {label}. The same risk limits apply. "
            f"Choose '{STAY}' to trade on paper instead.")
        self.go_button = self.addButton(GO, QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        self.go_button.setObjectName("tradeLive")
        self.stay_button = self.addButton(STAY, QtWidgets.QMessageBox.ButtonRole.RejectRole)
        self.stay_button.setObjectName("stayPaper")
        self.setDefaultButton(self.stay_button)
        self.setEscapeButton(self.stay_button)


async def confirm_live(account: LiveAccount, label: str, parent: QtWidgets.QWidget | None = None, *,
                       opened=None, auto_approve: bool = False) -> bool:
    """True only if the trader clicked "Trade LIVE". ``opened(dialog)`` is told the dialog once it is open (tests
    click its buttons through it); ``auto_approve``: this run's --auto-approve, said in the dialog."""
    dialog = LiveConfirmDialog(account, label, parent, auto_approve=auto_approve)
    dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def finished(_result: int) -> None:
        if not answer.done():
            answer.set_result(dialog.clickedButton() is dialog.go_button)

    dialog.finished.connect(finished)
    dialog.open()
    if opened is not None:
        opened(dialog)
    try:
        return await answer
    finally:
        if not answer.done():  # cancelled while open (the terminal closing): paper, and the dialog goes
            answer.cancel()
            dialog.done(0)
