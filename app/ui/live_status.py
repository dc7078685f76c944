"""What a live session adds to the status bar, beside the broker's label: AUTO-APPROVE ON (orders go to the exchange
with nobody confirming each one) and "user stream down Ns" (fills and order updates are not arriving), both red;
and the question before auto-approve is turned on from the Trading menu during a live session.

Qt-only; the session says what is true (``desk.proposals.auto_approve``, ``Session.user_stream_down_s``)."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

AUTO_BADGE = "AUTO-APPROVE ON"
AUTO_TIP = "Auto-approve is ON: proposals within its limits are sent to the exchange without asking."
TURN_ON = "Turn auto-approve ON"


def _red(label: QtWidgets.QLabel) -> None:
    label.setObjectName("feedState")  # the status bar's red (theme: QLabel#feedState[level="bad"])
    label.setProperty("level", "bad")


def auto_badge() -> QtWidgets.QLabel:
    label = QtWidgets.QLabel(AUTO_BADGE)
    _red(label)
    label.setToolTip(AUTO_TIP)
    label.setVisible(False)
    return label


def stream_label() -> QtWidgets.QLabel:
    label = QtWidgets.QLabel("")
    _red(label)
    label.setToolTip("The exchange's user stream (fills and order updates) is down; the broker is reconnecting "
                     "and reconciles the account when it is back.")
    label.setVisible(False)
    return label


def stream_text(down_s: float | None) -> str:
    return "" if down_s is None else f"user stream down {down_s:.0f}s"


def ask_auto_approve(parent: QtWidgets.QWidget, label: str, limits_text: str) -> QtWidgets.QMessageBox:
    """The question before auto-approve turns on in a live session: names the broker, says orders go without
    asking, and keeps it off by default (Enter or Escape). Not opened here: the caller opens it (never exec())."""
    box = QtWidgets.QMessageBox(parent)
    box.setObjectName("autoApproveLive")
    box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
    box.setWindowTitle(f"Auto-approve · {label}")
    box.setTextFormat(QtCore.Qt.TextFormat.PlainText)
    box.setText(f"Send proposals within auto-approve's limits to {label.removeprefix('LIVE · ')} without asking?")
    box.setInformativeText(f"{limits_text}\n\nEach of those orders goes to the exchange account with nobody "
                           "confirming it. The risk limits still apply.")
    box.yes_button = box.addButton(TURN_ON, QtWidgets.QMessageBox.ButtonRole.AcceptRole)  # type: ignore[attr-defined]
    keep = box.addButton("Keep it off", QtWidgets.QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(keep)
    box.setEscapeButton(keep)
    return box
