"""Approve / Reject / Modify for a proposal, from a card button or a keyboard shortcut.

Dialogs open with ``open()`` and answer through signals: a nested ``exec()`` loop inside the asyncio loop breaks
qasync ("Cannot enter into task").
"""

from __future__ import annotations

from decimal import Decimal

from PySide6 import QtCore, QtWidgets

from app.market.instruments import Instrument, defaults_for
from app.models import OrderType, Side
from app.trading.desk import ActionResult, TradingDesk
from app.trading.proposals import RELEASE_GRACE_S, OrderEdits, Proposal
from app.ui.trading_panel import mode_of, parse_decimal, run_action

DIALOG_REFRESH_MS = 250


class ModifyDialog(QtWidgets.QDialog):
    """Edit side, quantity, market/limit, limit price, stop-loss and take-profit before sending. It names the
    proposal (symbol, action) and shows, live, its countdown, the price now and the order's value as edited."""

    def __init__(self, proposal: Proposal, edits: OrderEdits, parent: QtWidgets.QWidget | None = None, *,
                 instrument: Instrument | None = None, price_of=None, clock=None, mode: str = "PAPER") -> None:
        """``price_of``: () -> the symbol's last price (Decimal or None); ``clock``: the proposal book's;
        ``mode``: LIVE or PAPER, said in the title and on the send button."""
        super().__init__(parent)
        self.proposal = proposal
        self.instrument = instrument or defaults_for(proposal.decision.symbol, proposal.price or 1)
        self._price_of = price_of or (lambda: proposal.price)
        self._clock = clock
        symbol = proposal.decision.symbol
        self.setWindowTitle(f"Modify {proposal.action.value} {symbol} · {mode}")
        form = QtWidgets.QFormLayout(self)
        self.heading = QtWidgets.QLabel(f"{proposal.action.value} {symbol}")
        self.heading.setObjectName("modifyHeading")
        self.countdown = QtWidgets.QLabel("")
        self.countdown.setObjectName("cardCountdown")
        self.price_label = QtWidgets.QLabel("")
        self.price_label.setObjectName("cardNumbers")
        self.value_label = QtWidgets.QLabel("")
        self.value_label.setObjectName("cardNumbers")
        for lab in (self.heading, self.countdown, self.price_label, self.value_label):
            lab.setTextFormat(QtCore.Qt.TextFormat.PlainText)
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
        form.addRow(self.heading, self.countdown)
        form.addRow("Price", self.price_label)
        form.addRow("Side", self.side)
        form.addRow("Quantity", self.qty)
        form.addRow("Order type", self.type)
        form.addRow("Limit price", self.limit)
        form.addRow("Order value", self.value_label)
        form.addRow("Stop-loss %", self.sl)
        form.addRow("Take-profit %", self.tp)
        form.addRow(self.error)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        self.send_button = buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok)
        self.send_button.setText(f"Send modified {mode} order")
        buttons.accepted.connect(self._try_accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.result_edits: OrderEdits | None = None
        for edit in (self.qty, self.limit):
            edit.textChanged.connect(self.refresh)
        self.type.currentTextChanged.connect(self.refresh)
        self._timer = QtCore.QTimer(self)  # the price moves and the countdown runs while the trader edits
        self._timer.setInterval(DIALOG_REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    def refresh(self) -> None:
        inst = self.instrument
        p = self.proposal
        if self._clock is not None:
            left = p.remaining_s(self._clock())
            if not p.held:
                text = f"expires in {left:.0f} s"
            elif left > 0:
                text = f"held while you edit · {left:.0f} s left"
            else:  # its deadline passed while held: it waits, and gets a few seconds once this closes
                text = f"held while you edit · {RELEASE_GRACE_S:g} s once this closes"
            self.countdown.setText(text if p.status.value == "PENDING" else p.status.value)
        now = self._price_of()
        self.price_label.setText(f"{inst.fmt_price(now)} now · {inst.fmt_price(p.price)} when proposed")
        self.value_label.setText(self.order_value_text())

    def order_value_text(self) -> str:
        """The order's value as edited: quantity × the limit price (LIMIT) or the price now (MARKET)."""
        inst = self.instrument
        try:
            qty = parse_decimal(self.qty.text(), "quantity")
            limit = (parse_decimal(self.limit.text(), "limit price")
                     if self.type.currentText() == OrderType.LIMIT.value else None)
        except ValueError:
            return "—"
        ref = limit if limit is not None else self._price_of()
        if ref is None:
            return "—"
        return f"{inst.fmt_money(qty * ref)} {inst.quote}".strip()

    def done(self, result: int) -> None:
        self._timer.stop()
        super().done(result)

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
    """The trader's three verbs on proposals; results go to ``report`` (the trading panel's message line).

    Called without a proposal (the keys A / R / M) they act on ``target()``: the proposal the Decisions dock
    highlights (the symbol on screen's newest pending one, else the selected card), never another symbol's unseen."""

    def __init__(self, desk: TradingDesk, report, parent_widget: QtWidgets.QWidget, target=None) -> None:
        super().__init__(parent_widget)
        self.desk = desk
        self.report = report
        self.parent_widget = parent_widget
        # () -> (proposal or None, why); the window sets the Decisions dock's. Alone: the newest pending one.
        self.target = target or (lambda: (self.desk.proposals.newest_pending(), "no pending proposal"))
        self.dialog: QtWidgets.QDialog | None = None  # the open dialog, if any (tests reach it here)
        self.mode = mode_of(desk)  # LIVE or PAPER: every button and dialog that sends an order says it

    def _resolve(self, p: Proposal | None) -> Proposal | None:
        if p is not None:
            return p
        p, why = self.target()
        if p is None:
            self.report(ActionResult(False, why))
        return p

    def approve(self, p: Proposal | None = None, confirm_drift: bool = False) -> None:
        p = self._resolve(p)
        if p is None:
            return
        run_action(self.desk.approve(p.id, confirm_drift=confirm_drift), lambda r: self._after(r, p, None))

    def reject(self, p: Proposal | None = None) -> None:
        p = self._resolve(p)
        if p is None:
            return
        self.report(self.desk.reject(p.id))

    def modify(self, p: Proposal | None = None) -> None:
        """The Modify dialog; the proposal is held (does not expire) while it is open, so edits are never lost to
        the clock. Closed without sending, it gets a few seconds more (``ProposalBook.release``)."""
        p = self._resolve(p)
        if p is None:
            return
        book = self.desk.proposals
        symbol = p.decision.symbol
        # A card stays drawn up to one refresh after its proposal is over: edits made on it would only be refused.
        check = book.check_approvable(p, None, confirm_drift=True)  # reviewed, or past its deadline and not held
        if not check.ok:
            self.report(ActionResult(False, f"cannot modify {p.action.value} {symbol}: {check.message}"))
            return
        edits = self.desk.implied_edits(p)
        if edits is None:
            self.report(ActionResult(False, "no market price yet"))
            return
        book.hold(p)
        dialog = ModifyDialog(p, edits, self.parent_widget, instrument=self.desk.instruments.get(symbol),
                              price_of=lambda: self.desk.last_price(symbol) or p.price, clock=book.clock,
                              mode=self.mode)
        dialog.accepted.connect(lambda: self._send_modified(p, dialog.result_edits))
        dialog.rejected.connect(lambda: book.release(p))
        self._open(dialog)

    def _send_modified(self, p: Proposal, edits: OrderEdits | None, confirm_drift: bool = False) -> None:
        if edits is None:
            return
        run_action(self.desk.modify(p.id, edits, confirm_drift=confirm_drift), lambda r: self._after(r, p, edits))

    def _after(self, result: ActionResult, p: Proposal, edits: OrderEdits | None) -> None:
        self.report(result)
        if not result.needs_confirmation:
            self.desk.proposals.release(p)  # refused (a veto, the broker): the trader may still act on it
            return
        order, question = self.drift_question(p, edits, result.message)
        box = QtWidgets.QMessageBox(
            QtWidgets.QMessageBox.Icon.Warning, f"Price moved · {self.mode}", question,
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No, self.parent_widget,
        )
        box.button(QtWidgets.QMessageBox.StandardButton.Yes).setText(
            f"Send {self.mode} {order}" if order else f"Send {self.mode} order")
        box.setDefaultButton(QtWidgets.QMessageBox.StandardButton.No)
        box.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        # Held while the trader reads the question: it must not expire or be superseded under his "Yes". Released
        # on No or close, and on Yes once the order's result is in (``_after`` again).
        self.desk.proposals.hold(p)

        def answered(button: int) -> None:
            if button != QtWidgets.QMessageBox.StandardButton.Yes:
                self.desk.proposals.release(p)
                return
            if edits is None:
                self.approve(p, confirm_drift=True)
            else:
                self._send_modified(p, edits, confirm_drift=True)

        box.finished.connect(answered)
        self._open(box)

    def drift_question(self, p: Proposal, edits: OrderEdits | None, fallback: str) -> tuple[str, str]:
        """The order the Yes would send ("BUY 163.9 XRPUSDT") and the question naming it and the move: from, to, by
        how much (signed) and the bound. ``edits``: a modified order (None: the proposal's own, as it is now)."""
        desk = self.desk
        symbol = p.decision.symbol
        inst = desk.instruments.get(symbol)
        edits = edits or desk.implied_edits(p)
        now = desk.last_price(symbol)
        if edits is None or now is None or p.price is None or p.price <= 0:
            return "", f"{fallback}\n\nSend anyway as a {self.mode} order?"
        order = f"{edits.side.value} {inst.fmt_qty(edits.qty)} {symbol}"
        kind = edits.type.value.lower()
        if edits.limit_price is not None:
            kind += f" @ {inst.fmt_price(edits.limit_price)}"
        move = (now - p.price) / p.price * 100
        question = (f"{order} {kind}: the price moved {move:+.2f} % since the proposal ({inst.fmt_price(p.price)} -> "
                    f"{inst.fmt_price(now)}); the bound is {desk.proposals.max_drift_pct:g} %.\n\n"
                    f"Send {order} anyway as a {self.mode} order?")
        return order, question

    def _open(self, dialog: QtWidgets.QDialog) -> None:
        """Open ``dialog`` (never exec), reachable as ``self.dialog`` while open and deleted once closed: each
        dialog holds a timer and would otherwise stay a child of the window for good."""
        dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)

        def closed(_result: int = 0) -> None:
            if self.dialog is dialog:
                self.dialog = None

        dialog.finished.connect(closed)
        self.dialog = dialog
        dialog.open()
