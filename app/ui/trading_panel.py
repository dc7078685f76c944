"""Account summary, the manual order ticket and the kill switch.

Every button starts a desk coroutine as a task (never a nested loop) and shows its result, refusals included, in
the message line: a veto always says why.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation

from PySide6 import QtCore, QtWidgets

from app.market.instruments import amount_problem
from app.models import OrderOrigin, OrderRequest, OrderType, Side
from app.trading.desk import ActionResult, TradingDesk
from app.trading.risk import RiskState


def run_action(coro, on_done) -> asyncio.Task:
    """Start a desk action as a task; report its ActionResult (or the error) to ``on_done``."""
    task = asyncio.ensure_future(coro)

    def done(t: asyncio.Task) -> None:
        if t.cancelled():
            return
        exc = t.exception()
        on_done(ActionResult(False, f"{type(exc).__name__}: {exc}") if exc else t.result())

    task.add_done_callback(done)
    return task


def mode_of(desk: TradingDesk) -> str:
    """"LIVE" or "PAPER": what every button that sends an order says."""
    return "LIVE" if getattr(desk.broker, "mode", "PAPER") == "LIVE" else "PAPER"


def parse_decimal(text: str, what: str) -> Decimal:
    try:
        v = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"{what} {text!r} is not a number") from None
    problem = amount_problem(v, what)  # infinite or beyond any market: refused here, in words
    if problem is not None:
        raise ValueError(problem)
    return v


class TradingPanel(QtWidgets.QWidget):
    def __init__(self, desk: TradingDesk, symbol: str, blotter=None, parent: QtWidgets.QWidget | None = None, *,
                 mode_text: str | None = None) -> None:
        """``mode_text``: "PAPER" or "LIVE · Binance testnet" (the session's ``broker_label``): the ticket's title
        and its buttons say where an order goes."""
        super().__init__(parent)
        self.desk = desk
        self.symbol = symbol
        self.blotter = blotter
        self.mode = mode_of(desk)
        self.mode_text = mode_text or self.mode
        self.last_result: ActionResult | None = None
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(6)

        summary = QtWidgets.QGridLayout()
        self.equity = self._value(summary, 0, "Equity")
        self.cash = self._value(summary, 1, "Cash")
        self.day_pnl = self._value(summary, 2, "Day PnL")
        self.unrealized = self._value(summary, 3, "Unrealised")
        self.risk_state = self._value(summary, 4, "Risk")
        outer.addLayout(summary)

        ticket = QtWidgets.QGroupBox(f"Order ticket · {self.mode_text}")
        ticket.setObjectName("orderTicket")
        ticket.setProperty("mode", self.mode)
        self.ticket = ticket
        form = QtWidgets.QGridLayout(ticket)
        self.side = QtWidgets.QComboBox()
        self.side.addItems([Side.BUY.value, Side.SELL.value])
        self.type = QtWidgets.QComboBox()
        self.type.addItems([OrderType.MARKET.value, OrderType.LIMIT.value])
        self.qty = QtWidgets.QLineEdit()
        self.qty.setPlaceholderText("quantity, e.g. 0.01")
        self.price = QtWidgets.QLineEdit()
        self.price.setPlaceholderText("limit price")
        self.price.setEnabled(False)
        self.type.currentTextChanged.connect(lambda t: self.price.setEnabled(t == OrderType.LIMIT.value))
        self.submit = QtWidgets.QPushButton(f"Send {self.mode} order")
        self.submit.setObjectName("sendOrder")
        self.submit.setProperty("mode", self.mode)
        self.submit.setToolTip("Sent to the exchange account: real orders" if self.mode == "LIVE"
                               else "Filled on paper against the live market")
        self.submit.clicked.connect(self.send_ticket)
        form.addWidget(self.side, 0, 0)
        form.addWidget(self.type, 0, 1)
        form.addWidget(self.qty, 1, 0)
        form.addWidget(self.price, 1, 1)
        form.addWidget(self.submit, 2, 0, 1, 2)
        outer.addWidget(ticket)

        buttons = QtWidgets.QGridLayout()
        self.cancel_button = QtWidgets.QPushButton("Cancel selected")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.flatten_button = QtWidgets.QPushButton(f"Flatten position ({self.mode})")
        self.flatten_button.clicked.connect(lambda: self._run(self.desk.flatten(self.symbol)))
        self.kill_button = QtWidgets.QPushButton(f"KILL SWITCH ({self.mode})")
        self.kill_button.setObjectName("killSwitch")
        self.kill_button.setToolTip(
            "Halt trading, cancel every open order at the exchange and flatten every position; anything the "
            f"exchange refuses is reported ({self.mode_text})" if self.mode == "LIVE"
            else "Cancel every order, flatten every position and halt trading (PAPER)")
        self.kill_button.clicked.connect(lambda: self._run(self.desk.kill_switch()))
        self.resume_button = QtWidgets.QPushButton("Resume")
        self.resume_button.clicked.connect(lambda: self.show_result(self.desk.resume()))
        buttons.addWidget(self.cancel_button, 0, 0)
        buttons.addWidget(self.flatten_button, 0, 1)
        buttons.addWidget(self.kill_button, 1, 0)
        buttons.addWidget(self.resume_button, 1, 1)
        outer.addLayout(buttons)

        self.message = QtWidgets.QLabel("")
        self.message.setObjectName("deskMessage")
        self.message.setWordWrap(True)
        self.message.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        outer.addWidget(self.message)
        outer.addStretch(1)

    def _value(self, grid: QtWidgets.QGridLayout, row: int, name: str) -> QtWidgets.QLabel:
        grid.addWidget(QtWidgets.QLabel(name), row, 0)
        value = QtWidgets.QLabel("—")
        value.setObjectName("accountValue")
        value.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        grid.addWidget(value, row, 1)
        return value

    # ----- actions ------------------------------------------------------------------------------------------
    def ticket_request(self) -> OrderRequest:
        qty = parse_decimal(self.qty.text(), "quantity")
        otype = OrderType(self.type.currentText())
        limit = parse_decimal(self.price.text(), "limit price") if otype is OrderType.LIMIT else None
        return OrderRequest(self.symbol, Side(self.side.currentText()), otype, qty, limit_price=limit,
                            origin=OrderOrigin.MANUAL)

    def send_ticket(self) -> None:
        try:
            req = self.ticket_request()
        except ValueError as exc:
            self.show_result(ActionResult(False, str(exc)))
            return
        self._run(self.desk.submit_manual(req))

    def cancel_selected(self) -> None:
        order = self.blotter.selected_working_order() if self.blotter is not None else None
        if order is None:
            self.show_result(ActionResult(False, "select a working order to cancel"))
            return
        self._run(self.desk.cancel(order.id))

    def _run(self, coro) -> asyncio.Task:
        return run_action(coro, self.show_result)

    def show_result(self, result: ActionResult) -> None:
        self.last_result = result
        self.message.setText(result.message)
        self.message.setProperty("level", "ok" if result.ok else "bad")
        self.message.style().unpolish(self.message)
        self.message.style().polish(self.message)

    # ----- refresh ------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        pf = self.desk.portfolio
        now_ms = self.desk.now_ms()
        self.equity.setText(f"{pf.equity():,.2f}")
        self.cash.setText(f"{pf.cash:,.2f}")
        day = pf.day_pnl(now_ms)
        self.day_pnl.setText(f"{day:+,.2f}")
        inst = self.desk.instruments.get(self.symbol)
        self.unrealized.setText(inst.fmt_money(pf.unrealized_pnl(self.symbol), sign=True))
        # The ticket's hints in the symbol's own steps (0.1 XRP, 0.00001 BTC), so a valid order is typed first time.
        hint = f"quantity, step {inst.fmt_qty(inst.lot_size)} {inst.base}".rstrip()
        if self.qty.placeholderText() != hint:
            self.qty.setPlaceholderText(hint)
            self.price.setPlaceholderText(f"limit price, tick {inst.fmt_price(inst.tick_size)}")
        state = self.desk.risk.state
        self.risk_state.setText(state.value)
        self.risk_state.setProperty("level", {RiskState.ACTIVE: "ok", RiskState.REDUCING: "warn"}.get(state, "bad"))
        self.risk_state.style().unpolish(self.risk_state)
        self.risk_state.style().polish(self.risk_state)
