"""Account summary, the manual order ticket and the kill switch.

The panel paints two snapshots made without Qt (``app.view.ticket``): ``AccountView`` (each figure labelled with what
it covers: the account, or the symbol on screen) and ``TicketView`` (the ticket read back: symbol, bid / ask, order
value and % of equity, SL / TP as price and percent). The ticket takes MARKET, LIMIT and STOP orders with an optional
stop-loss and take-profit (a price, or a percent such as "2%"); ``load_order`` puts a working order into it ("Modify":
Send becomes Replace, through ``desk.replace_order``); ``send_at_touch`` (the hotkeys) buys at the ask or sells at the
bid with the ticket's quantity; ``set_price`` (a click on the ladder, or the bid / ask buttons) puts a price in it.

Every button starts a desk coroutine as a task (never a nested loop) and shows its result, refusals included, in
the message line: a veto always says why. Laid out to show Send without scrolling in the bottom dock of a 1280x720
window: the ticket first, the account in two columns, the buttons in one row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from PySide6 import QtCore, QtWidgets

from app.market.instruments import amount_problem
from app.models import Order, OrderOrigin, OrderRequest, OrderType, Side
from app.trading.desk import ActionResult, TradingDesk
from app.view.ticket import AccountView, TicketView, desk_account_view, ticket_view

SIDE_BY_SIDE_PX = 560  # from this width the account sits beside the ticket (seen without scrolling)
TYPE_NAMES = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT, "STOP": OrderType.STOP_MARKET}
TYPE_TEXT = {v: k for k, v in TYPE_NAMES.items()}
Touch = Callable[[str], tuple[Decimal | None, Decimal | None]]


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


def _bracket(view: TicketView) -> dict[str, Decimal | None]:
    """The ticket's stop-loss and take-profit as typed: a price as that price (the leg lands there whatever the
    fill), a percent as a percent from the fill."""
    return {"stop_loss_pct": view.stop_loss_pct, "take_profit_pct": view.take_profit_pct,
            "stop_loss_price": view.stop_loss_price, "take_profit_price": view.take_profit_price}


class TradingPanel(QtWidgets.QWidget):
    def __init__(self, desk: TradingDesk, symbol: str, blotter=None, parent: QtWidgets.QWidget | None = None, *,
                 mode_text: str | None = None, touch: Touch | None = None) -> None:
        """``mode_text``: "PAPER" or "LIVE · Binance testnet" (the session's ``broker_label``): the ticket's title
        and its buttons say where an order goes. ``touch(symbol)``: the best bid and ask (default: the desk's local
        book while it is valid)."""
        super().__init__(parent)
        self.desk = desk
        self.symbol = symbol
        self.blotter = blotter
        self.mode = mode_of(desk)
        self.mode_text = mode_text or self.mode
        self.touch = touch or self._book_touch
        self.last_result: ActionResult | None = None
        self.modifying: Order | None = None  # the working order a Send replaces (Modify mode)
        self.loaded_qty = ""  # the quantity text Modify loaded: unchanged, the replacement takes what is left then
        self.ticket_snapshot: TicketView | None = None
        self.account_snapshot: AccountView | None = None
        # In a scroll area: the panel never forces the window's minimum size (the dock may be short at 1280x720);
        # the ticket and its Send button come first, so they are what a short dock shows.
        root = QtWidgets.QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        self.scroll = QtWidgets.QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QtWidgets.QWidget()
        self.scroll.setWidget(body)
        root.addWidget(self.scroll)
        # Narrow: the account below the ticket and its buttons; wide enough (SIDE_BY_SIDE_PX), beside them.
        self.columns = QtWidgets.QBoxLayout(QtWidgets.QBoxLayout.Direction.TopToBottom, body)
        self.columns.setContentsMargins(4, 2, 4, 2)
        self.columns.setSpacing(6)
        outer = QtWidgets.QVBoxLayout()
        outer.setSpacing(2)
        self.columns.addLayout(outer, 3)

        ticket = QtWidgets.QGroupBox(f"Order ticket · {self.mode_text}")
        ticket.setObjectName("orderTicket")
        ticket.setProperty("mode", self.mode)
        self.ticket = ticket
        form = QtWidgets.QGridLayout(ticket)
        form.setContentsMargins(4, 2, 4, 4)
        form.setHorizontalSpacing(4)
        form.setVerticalSpacing(2)
        self.symbol_label = QtWidgets.QLabel(symbol)
        self.symbol_label.setObjectName("ticketSymbol")
        self.bid_button = QtWidgets.QPushButton("Bid —")
        self.bid_button.setObjectName("bidButton")
        self.bid_button.setToolTip("Click: the bid into the ticket's price (a limit order)")
        self.bid_button.clicked.connect(lambda: self._touch_into_ticket(Side.SELL))
        self.ask_button = QtWidgets.QPushButton("Ask —")
        self.ask_button.setObjectName("askButton")
        self.ask_button.setToolTip("Click: the ask into the ticket's price (a limit order)")
        self.ask_button.clicked.connect(lambda: self._touch_into_ticket(Side.BUY))
        self.side = QtWidgets.QComboBox()
        self.side.addItems([Side.BUY.value, Side.SELL.value])
        self.type = QtWidgets.QComboBox()
        self.type.addItems(list(TYPE_NAMES))
        self.qty = QtWidgets.QLineEdit()
        self.qty.setPlaceholderText("quantity, e.g. 0.01")
        self.price = QtWidgets.QLineEdit()
        self.price.setPlaceholderText("limit price")
        self.price.setEnabled(False)
        self.stop_loss = QtWidgets.QLineEdit()
        self.stop_loss.setPlaceholderText("stop-loss: price or %")
        self.stop_loss.setToolTip("A price (58800: placed there, whatever the fill) or a percent from the fill (2%); "
                                  "placed once the order fills")
        self.take_profit = QtWidgets.QLineEdit()
        self.take_profit.setPlaceholderText("take-profit: price or %")
        self.take_profit.setToolTip(self.stop_loss.toolTip())
        self.readback = QtWidgets.QLabel("")
        self.readback.setObjectName("ticketReadback")
        self.readback.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.readback.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        self.readback_text = ""  # the line before eliding
        self.submit = QtWidgets.QPushButton(f"Send {self.mode} order")
        self.submit.setObjectName("sendOrder")
        self.submit.setProperty("mode", self.mode)
        self.submit.setToolTip("Sent to the exchange account: real orders" if self.mode == "LIVE"
                               else "Filled on paper against the live market")
        self.submit.clicked.connect(self.send_ticket)
        self.leave_modify = QtWidgets.QPushButton("New order")
        self.leave_modify.setToolTip("Leave Modify: the ticket sends a new order again")
        self.leave_modify.clicked.connect(self.clear_modify)
        self.leave_modify.setVisible(False)
        top = QtWidgets.QHBoxLayout()  # the symbol at its own width, bid and ask sharing the rest
        top.setSpacing(4)
        top.addWidget(self.symbol_label)
        top.addWidget(self.bid_button, 1)
        top.addWidget(self.ask_button, 1)
        form.addLayout(top, 0, 0, 1, 3)
        form.addWidget(self.side, 1, 0)
        form.addWidget(self.type, 1, 1)
        form.addWidget(self.qty, 1, 2)
        form.addWidget(self.price, 2, 0)
        form.addWidget(self.stop_loss, 2, 1)
        form.addWidget(self.take_profit, 2, 2)
        form.addWidget(self.readback, 3, 0, 1, 3)
        send_row = QtWidgets.QHBoxLayout()
        send_row.setSpacing(4)
        send_row.addWidget(self.submit, 1)
        send_row.addWidget(self.leave_modify)
        form.addLayout(send_row, 4, 0, 1, 3)
        for col in range(3):
            form.setColumnStretch(col, 1)
        for w in (self.side, self.type, self.qty, self.price, self.stop_loss, self.take_profit, self.bid_button,
                  self.ask_button):
            w.setMinimumWidth(60)
            w.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, w.sizePolicy().verticalPolicy())
        outer.addWidget(ticket)
        for edit in (self.qty, self.price, self.stop_loss, self.take_profit):
            edit.textChanged.connect(self.refresh_ticket)
            edit.returnPressed.connect(self.send_ticket)
        self.side.currentTextChanged.connect(self.refresh_ticket)
        self.type.currentTextChanged.connect(self._type_changed)

        buttons = QtWidgets.QVBoxLayout()
        buttons.setSpacing(2)
        first, second = QtWidgets.QHBoxLayout(), QtWidgets.QHBoxLayout()
        first.setSpacing(3)
        second.setSpacing(3)
        buttons.addLayout(first)
        buttons.addLayout(second)  # then the kill switch alone, the full width: never cut, never missed
        self.cancel_button = QtWidgets.QPushButton("Cancel selected")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.cancel_all_button = QtWidgets.QPushButton("Cancel all")
        self.cancel_all_button.setToolTip("Cancel every working order; the stop-loss and take-profit of open positions "
                                          "are kept (no flatten, no halt)")
        self.cancel_all_button.clicked.connect(lambda: self._run(self.desk.cancel_all()))
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
        first.addWidget(self.cancel_button)
        first.addWidget(self.cancel_all_button)
        second.addWidget(self.flatten_button)
        second.addWidget(self.resume_button)
        buttons.addWidget(self.kill_button)
        outer.addLayout(buttons)

        # What happened to the last thing sent; a short dock scrolls to it when it changes (show_result).
        self.message = QtWidgets.QLabel("")
        self.message.setObjectName("deskMessage")
        self.message.setWordWrap(True)
        self.message.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        outer.addWidget(self.message)

        # The account: two columns of labelled figures, each saying what it covers.
        self.account_grid = QtWidgets.QGridLayout()
        self.account_grid.setHorizontalSpacing(6)
        self.account_grid.setVerticalSpacing(1)
        self.account_labels: dict[str, QtWidgets.QLabel] = {}
        self.account_values: dict[str, QtWidgets.QLabel] = {}
        account = QtWidgets.QVBoxLayout()
        account.addLayout(self.account_grid)
        account.addStretch(1)
        self.columns.addLayout(account, 2)
        self._account_keys: tuple[str, ...] = ()
        self.refresh()

    def resizeEvent(self, event) -> None:
        side = event.size().width() >= SIDE_BY_SIDE_PX
        direction = (QtWidgets.QBoxLayout.Direction.LeftToRight if side
                     else QtWidgets.QBoxLayout.Direction.TopToBottom)
        if self.columns.direction() != direction:
            self.columns.setDirection(direction)
        super().resizeEvent(event)

    # ----- compatibility: the figures as before (tests and the window read them) -------------------------------
    @property
    def equity(self) -> QtWidgets.QLabel:
        return self.account_values["equity"]

    @property
    def cash(self) -> QtWidgets.QLabel:
        return self.account_values["cash"]

    @property
    def day_pnl(self) -> QtWidgets.QLabel:
        return self.account_values["day_pnl"]

    @property
    def unrealized(self) -> QtWidgets.QLabel:
        return self.account_values["unrealised_symbol"]

    @property
    def risk_state(self) -> QtWidgets.QLabel:
        return self.account_values["risk"]

    # ----- entry points others wire to -------------------------------------------------------------------------
    def set_price(self, price: Decimal) -> None:
        """A price from the order book ladder (or the bid / ask buttons) into the ticket: a MARKET ticket becomes a
        LIMIT, a STOP keeps its type (the price is its stop)."""
        if self.type.currentText() == "MARKET":
            self.type.setCurrentText("LIMIT")
        inst = self.desk.instruments.get(self._ticket_symbol())
        self.price.setText(f"{inst.round_price(Decimal(price)):f}")
        self.refresh_ticket()

    def send_at_touch(self, side: Side) -> asyncio.Task | None:
        """The hotkeys: buy at the ask / sell at the bid, with the ticket's quantity and its SL / TP, as a LIMIT at
        the touch (takes what is there, never walks the book). Says why when there is no quantity or no touch."""
        symbol = self.symbol
        bid, ask = self.touch(symbol)
        price = ask if side is Side.BUY else bid
        word = "buy at the ask" if side is Side.BUY else "sell at the bid"
        if price is None:
            self.show_result(ActionResult(False, f"{word}: no {'ask' if side is Side.BUY else 'bid'} for {symbol} "
                                                 "yet (the book is not synced)"))
            return None
        view = self._view(side=side, order_type=OrderType.LIMIT, price_text=f"{price:f}", symbol=symbol,
                          replacing=None)
        if view.problem:
            self.show_result(ActionResult(False, f"{word}: {view.problem}"))
            return None
        req = OrderRequest(symbol, side, OrderType.LIMIT, parse_decimal(self.qty.text(), "quantity"),
                           limit_price=price, origin=OrderOrigin.MANUAL, **_bracket(view))
        return self._run(self.desk.submit_manual(req))

    def load_order(self, order_id: str) -> bool:
        """Modify: the working order into the ticket (side, type, quantity left, price); Send becomes Replace.
        Only its price and quantity change (a bracket leg: its price); "New order" leaves the mode."""
        order = self.desk.broker.get(order_id)
        if order is None or not order.status.is_open or order.request.type is OrderType.MARKET:
            self.show_result(ActionResult(False, f"order {order_id} is not a working limit or stop order"))
            return False
        r = order.request
        inst = self.desk.instruments.get(order.symbol)
        self.modifying = order
        self.side.setCurrentText(r.side.value)
        self.type.setCurrentText(TYPE_TEXT[r.type])
        self.qty.setText(f"{inst.round_qty(order.remaining):f}")
        self.loaded_qty = self.qty.text()
        price = r.limit_price if r.type is OrderType.LIMIT else r.stop_price
        self.price.setText("" if price is None else f"{price:f}")
        self.stop_loss.clear()
        self.take_profit.clear()
        leg = r.origin is OrderOrigin.BRACKET
        for w in (self.side, self.type, self.stop_loss, self.take_profit):
            w.setEnabled(False)
        self.qty.setEnabled(not leg)
        self.price.setEnabled(True)
        self.submit.setText(f"Replace {self.mode} order")
        self.leave_modify.setVisible(True)
        self.refresh_ticket()
        self.price.setFocus()
        return True

    def clear_modify(self) -> None:
        self.modifying = None
        for w in (self.side, self.type, self.stop_loss, self.take_profit, self.qty):
            w.setEnabled(True)
        self.price.setEnabled(self.type.currentText() != "MARKET")
        self.submit.setText(f"Send {self.mode} order")
        self.leave_modify.setVisible(False)
        self.refresh_ticket()

    # ----- actions ------------------------------------------------------------------------------------------
    def _ticket_symbol(self) -> str:
        return self.modifying.symbol if self.modifying is not None else self.symbol

    def _order_type(self) -> OrderType:
        return TYPE_NAMES.get(self.type.currentText(), OrderType.MARKET)

    def _type_changed(self, text: str) -> None:
        self.price.setEnabled(text != "MARKET")
        self.refresh_ticket()

    def _touch_into_ticket(self, side: Side) -> None:
        """The bid / ask button: its price into the ticket."""
        bid, ask = self.touch(self._ticket_symbol())
        price = ask if side is Side.BUY else bid
        if price is not None:
            self.set_price(price)

    def ticket_request(self) -> OrderRequest:
        qty = parse_decimal(self.qty.text(), "quantity")
        otype = self._order_type()
        limit = stop = None
        if otype is OrderType.LIMIT:
            limit = parse_decimal(self.price.text(), "limit price")
        elif otype is OrderType.STOP_MARKET:
            stop = parse_decimal(self.price.text(), "stop price")
        view = self._view()
        if view.problem and (self.stop_loss.text().strip() or self.take_profit.text().strip()):
            raise ValueError(view.problem)  # a bracket that cannot be read is never dropped silently
        return OrderRequest(self.symbol, Side(self.side.currentText()), otype, qty, limit_price=limit,
                            stop_price=stop, origin=OrderOrigin.MANUAL, **_bracket(view))

    def send_ticket(self) -> None:
        if self.modifying is not None:
            self._send_replace(self.modifying)
            return
        try:
            req = self.ticket_request()
        except ValueError as exc:
            self.show_result(ActionResult(False, str(exc)))
            return
        self._run(self.desk.submit_manual(req))

    def _send_replace(self, order: Order) -> None:
        try:
            price = parse_decimal(self.price.text(), "price")
            # The quantity as loaded is not sent: the desk takes what the order has left once canceled (a fill
            # since Modify, or during the cancel, is never bought again). One the trader edited is sent as typed.
            edited = self.qty.isEnabled() and self.qty.text().strip() != self.loaded_qty.strip()
            qty = parse_decimal(self.qty.text(), "quantity") if edited else None
        except ValueError as exc:
            self.show_result(ActionResult(False, str(exc)))
            return
        if order.request.type is OrderType.STOP_MARKET:
            coro = self.desk.replace_order(order.id, stop_price=price, qty=qty)
        else:
            coro = self.desk.replace_order(order.id, price=price, qty=qty)

        def done(result: ActionResult) -> None:
            self.show_result(result)
            if result.ok and self.modifying is order:
                self.clear_modify()

        run_action(coro, done)

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
        if self.isVisible():  # a short dock scrolls to it: a refusal is never left unread below the fold
            QtCore.QTimer.singleShot(0, self, lambda: self.scroll.ensureWidgetVisible(self.message, 0, 0))

    # ----- rendering ----------------------------------------------------------------------------------------
    def render_account(self, view: AccountView) -> None:
        """Paint the account as a small table: a row per figure, a column per scope (the account, the symbol on
        screen) under headers that say which, so the symbol's unrealised PnL is never read for the account's. The
        grid is rebuilt only when the rows' keys change."""
        self.account_snapshot = view
        if view.keys != self._account_keys:
            while self.account_grid.count():
                item = self.account_grid.takeAt(0)
                if item.widget() is not None:
                    item.widget().deleteLater()
            self.account_labels.clear()
            self.account_values.clear()
            self.account_headers = (QtWidgets.QLabel(), QtWidgets.QLabel())
            for col, header in enumerate(self.account_headers, start=1):
                header.setObjectName("accountHeader")
                header.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight)
                self.account_grid.addWidget(header, 0, col)
            names = list(dict.fromkeys(r.name or r.label for r in view.rows))
            scopes: dict[str, set[str]] = {}
            for r in view.rows:
                scopes.setdefault(r.name or r.label, set()).add(r.scope)
            for row in view.rows:
                name = row.name or row.label
                line = 1 + names.index(name)
                if name not in {lab.text() for lab in self.account_labels.values()}:
                    title = QtWidgets.QLabel(name)
                    self.account_grid.addWidget(title, line, 0)
                else:
                    title = next(lab for lab in self.account_labels.values() if lab.text() == name)
                value = QtWidgets.QLabel()
                value.setObjectName("riskState" if row.key == "risk" else "accountValue")  # the theme's colours
                value.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
                value.setTextFormat(QtCore.Qt.TextFormat.PlainText)
                if row.scope == "symbol" and scopes[name] == {"symbol"}:
                    self.account_grid.addWidget(value, line, 1, 1, 2)  # a symbol-only figure (the position)
                else:
                    self.account_grid.addWidget(value, line, 2 if row.scope == "symbol" else 1)
                self.account_labels[row.key], self.account_values[row.key] = title, value
            self.account_grid.setColumnStretch(1, 1)
            self.account_grid.setColumnStretch(2, 1)
            self._account_keys = view.keys
        self.account_headers[0].setText("Account")
        self.account_headers[1].setText(view.symbol)
        for row in view.rows:
            value = self.account_values[row.key]
            if value.text() != row.value:
                value.setText(row.value)
            value.setToolTip(f"{row.label}: {row.tip}" if row.tip else row.label)
            if value.property("level") != (row.tone or None):
                value.setProperty("level", row.tone or None)
                value.style().unpolish(value)
                value.style().polish(value)

    def render_ticket(self, view: TicketView) -> None:
        self.ticket_snapshot = view
        self.symbol_label.setText(view.symbol)
        self.symbol_label.setToolTip(view.title)
        bid, ask = f"Bid {view.bid}", f"Ask {view.ask}"
        if self.bid_button.text() != bid:
            self.bid_button.setText(bid)
        if self.ask_button.text() != ask:
            self.ask_button.setText(ask)
        self.bid_button.setEnabled(view.bid_price is not None)
        self.ask_button.setEnabled(view.ask_price is not None)
        # One line, elided to the ticket's width (the whole of it in the tooltip): it must not push Send away.
        text = view.problem if view.problem and self._typed() else view.summary
        full = "\n".join(t for t in (view.order_text, f"value {view.order_value} {view.pct_equity}".rstrip(),
                                      f"SL {view.stop_loss}" if view.stop_loss else "",
                                      f"TP {view.take_profit}" if view.take_profit else "", view.problem) if t)
        self.readback.setText(self.readback.fontMetrics().elidedText(
            text, QtCore.Qt.TextElideMode.ElideRight, max(self.readback.width(), 120)))
        self.readback_text = text
        self.readback.setToolTip(full)
        self.submit.setToolTip(view.order_text if not view.problem else view.problem)
        if self.qty.placeholderText() != view.qty_hint:
            self.qty.setPlaceholderText(view.qty_hint)
        if self.price.placeholderText() != view.price_hint:
            self.price.setPlaceholderText(view.price_hint)

    def _typed(self) -> bool:
        return any(e.text().strip() for e in (self.qty, self.price, self.stop_loss, self.take_profit))

    def _view(self, *, side: Side | None = None, order_type: OrderType | None = None, price_text: str | None = None,
              symbol: str | None = None, replacing: str | bool | None = False) -> TicketView:
        symbol = symbol or self._ticket_symbol()
        bid, ask = self.touch(symbol)
        return ticket_view(
            symbol, instrument=self.desk.instruments.get(symbol), mode=self.mode,
            side=side or Side(self.side.currentText()), order_type=order_type or self._order_type(),
            qty_text=self.qty.text(), price_text=self.price.text() if price_text is None else price_text,
            stop_loss_text=self.stop_loss.text(), take_profit_text=self.take_profit.text(), bid=bid, ask=ask,
            last=self.desk.last_price(symbol), equity=self.desk.portfolio.equity(),
            replacing=(self.modifying.id if self.modifying is not None else None) if replacing is False else replacing)

    def _book_touch(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        book = self.desk.books.get(symbol)
        if book is None or not book.is_valid:
            return None, None
        bid, ask = book.best_bid(), book.best_ask()
        return (Decimal(str(bid[0])) if bid else None), (Decimal(str(ask[0])) if ask else None)

    # ----- refresh ------------------------------------------------------------------------------------------
    def refresh_ticket(self) -> None:
        self.render_ticket(self._view())

    def refresh(self, account: AccountView | None = None) -> None:
        """``account``: the view model's account snapshot (the window passes it); None builds it from the desk."""
        self.render_account(account or desk_account_view(self.desk, self.symbol))
        if self.modifying is not None and not self.modifying.status.is_open:
            self.show_result(ActionResult(False, f"order {self.modifying.id} is no longer working: "
                                                 f"{self.modifying.status.value.lower()}"))
            self.clear_modify()
        self.refresh_ticket()
