"""Approve / Reject / Modify for a proposal, from a card button or a keyboard shortcut.

Dialogs open with ``open()`` and answer through signals: a nested ``exec()`` loop inside the asyncio loop breaks
qasync ("Cannot enter into task").
"""

from __future__ import annotations

from decimal import Decimal

from PySide6 import QtCore, QtWidgets

from app.models import OrderType, Side
from app.trading.desk import ActionResult, TradingDesk
from app.trading.proposals import OrderEdits, Proposal
from app.ui.trading_panel import parse_decimal, run_action


class ModifyDialog(QtWidgets.QDialog):
    """Edit side, quantity, market/limit, limit price, stop-loss and take-profit before sending."""

    def __init__(self, proposal: Proposal, edits: OrderEdits, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.proposal = proposal
        self.setWindowTitle(f"Modify {proposal.action.value} {proposal.decision.symbol}")
        form = QtWidgets.QFormLayout(self)
        self.side = QtWidgets.QComboBox()
        self.side.addItems([Side.BUY.value, Side.SELL.value])
        self.side.setCurrentText(edits.side.value)
        self.qty = QtWidgets.QLineEdit(f"{edits.qty.normalize():f}")
        self.type = QtWidgets.QComboBox()
        self.type.addItems([OrderType.MARKET.value, OrderType.LIMIT.value])
        self.type.setCurrentText(edits.type.value)
        self.limit = QtWidgets.QLineEdit("" if edits.limit_price is None else f"{edits.limit_price:f}")
        self.sl = QtWidgets.QLineEdit("" if edits.stop_loss_pct is None else f"{edits.stop_loss_pct:f}")
        self.tp = QtWidgets.QLineEdit("" if edits.take_profit_pct is None else f"{edits.take_profit_pct:f}")
        self.error = QtWidgets.QLabel("")
        self.error.setObjectName("formError")
        self.error.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        form.addRow("Side", self.side)
        form.addRow("Quantity", self.qty)
        form.addRow("Order type", self.type)
        form.addRow("Limit price", self.limit)
        form.addRow("Stop-loss %", self.sl)
        form.addRow("Take-profit %", self.tp)
        form.addRow(self.error)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        self.send_button = buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok)
        self.send_button.setText("Send modified")
        buttons.accepted.connect(self._try_accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.result_edits: OrderEdits | None = None

    def edits(self) -> OrderEdits:
        otype = OrderType(self.type.currentText())
        limit = parse_decimal(self.limit.text(), "limit price") if otype is OrderType.LIMIT else None
        sl = parse_decimal(self.sl.text(), "stop-loss %") if self.sl.text().strip() else None
        tp = parse_decimal(self.tp.text(), "take-profit %") if self.tp.text().strip() else None
        for name, v in (("stop-loss %", sl), ("take-profit %", tp)):
            if v is not None and not Decimal(0) < v <= Decimal(100):
                raise ValueError(f"{name} must be above 0 and at most 100")
        return OrderEdits(Side(self.side.currentText()), parse_decimal(self.qty.text(), "quantity"), otype, limit,
                          sl, tp)

    def _try_accept(self) -> None:
        try:
            self.result_edits = self.edits()
        except ValueError as exc:
            self.error.setText(str(exc))
            return
        self.accept()


class ProposalActions(QtCore.QObject):
    """The trader's three verbs on proposals; results go to ``report`` (the trading panel's message line)."""

    def __init__(self, desk: TradingDesk, report, parent_widget: QtWidgets.QWidget) -> None:
        super().__init__(parent_widget)
        self.desk = desk
        self.report = report
        self.parent_widget = parent_widget
        self.dialog: QtWidgets.QDialog | None = None  # the open dialog, if any (tests reach it here)

    def newest_pending(self) -> Proposal | None:
        return self.desk.proposals.newest_pending()

    def approve(self, p: Proposal | None = None, confirm_drift: bool = False) -> None:
        p = p or self.newest_pending()
        if p is None:
            self.report(ActionResult(False, "no pending proposal"))
            return
        run_action(self.desk.approve(p.id, confirm_drift=confirm_drift), lambda r: self._after(r, p, None))

    def reject(self, p: Proposal | None = None) -> None:
        p = p or self.newest_pending()
        if p is None:
            self.report(ActionResult(False, "no pending proposal"))
            return
        self.report(self.desk.reject(p.id))

    def modify(self, p: Proposal | None = None) -> None:
        p = p or self.newest_pending()
        if p is None:
            self.report(ActionResult(False, "no pending proposal"))
            return
        edits = self.desk.implied_edits(p)
        if edits is None:
            self.report(ActionResult(False, "no market price yet"))
            return
        dialog = ModifyDialog(p, edits, self.parent_widget)
        dialog.accepted.connect(lambda: self._send_modified(p, dialog.result_edits))
        self.dialog = dialog
        dialog.open()

    def _send_modified(self, p: Proposal, edits: OrderEdits | None, confirm_drift: bool = False) -> None:
        if edits is None:
            return
        run_action(self.desk.modify(p.id, edits, confirm_drift=confirm_drift), lambda r: self._after(r, p, edits))

    def _after(self, result: ActionResult, p: Proposal, edits: OrderEdits | None) -> None:
        self.report(result)
        if not result.needs_confirmation:
            return
        box = QtWidgets.QMessageBox(
            QtWidgets.QMessageBox.Icon.Warning, "Price moved", f"{result.message}\n\nSend anyway?",
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No, self.parent_widget,
        )
        box.setTextFormat(QtCore.Qt.TextFormat.PlainText)

        def answered(button: int) -> None:
            if button != QtWidgets.QMessageBox.StandardButton.Yes:
                return
            if edits is None:
                self.approve(p, confirm_drift=True)
            else:
                self._send_modified(p, edits, confirm_drift=True)

        box.finished.connect(answered)
        self.dialog = box
        box.open()
