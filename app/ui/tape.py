"""The Trades dock: time and sales of the symbol on screen, newest on top, the price in the aggressor's colour (a buy
lifted the offer, a sell hit the bid), big prints bold on a tint.

It renders ``app.view.book.Tape`` snapshots. The rows are built once; a refresh gives each row the trade of its
place and the row repaints only when its key changed (an unchanged tape touches nothing). Rows that do not fit the
dock are hidden from the bottom: the tape never asks for its whole height.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.models import Side
from app.ui import theme
from app.ui.order_book import PaintedRow, row_height
from app.view.book import TAPE_ROWS, Tape, TapeRow

COLUMNS = (0.38, 0.34, 0.28)  # time, price, qty


class TradeRow(PaintedRow):
    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(COLUMNS, parent)
        self.align_left = frozenset({0})
        self.key = ""
        self._big = False

    def show_trade(self, row: TapeRow | None) -> bool:
        """True when the row changed."""
        key, big = ("", False) if row is None else (row.key, row.big)
        if key == self.key and big == self._big:
            return False
        self.key, self._big = key, big
        if row is None:
            return self.show_values(("", "", ""), (None, None, None))
        t = theme.current()
        side = t.up if row.side is Side.BUY else t.down
        self.show_values((row.time_text, row.price_text, row.qty_text), (t.muted, side, side if row.big else None),
                         bold=row.big, tint=side if row.big else None)
        return True


class _Rows(QtWidgets.QWidget):
    def __init__(self, parent: QtWidgets.QWidget) -> None:
        super().__init__(parent)
        self.rows: list[TradeRow] = []
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)

    def build(self, n: int) -> None:
        for row in self.rows:
            row.deleteLater()
        self.rows = [TradeRow(self) for _ in range(n)]
        self._place()

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(240, row_height(self.font()) * len(self.rows))

    def minimumSizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(120, row_height(self.font()) * 2)

    def resizeEvent(self, event) -> None:
        self._place()
        super().resizeEvent(event)

    def _place(self) -> None:
        h = row_height(self.font())
        fit = max(1, self.height() // h)
        for i, row in enumerate(self.rows):
            row.setGeometry(0, i * h, self.width(), h)
            row.setVisible(i < fit)


class TapePanel(QtWidgets.QWidget):
    """The Trades dock's content: ``render(Tape)``, newest on top."""

    def __init__(self, rows: int = TAPE_ROWS, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tape")
        self.tape: Tape | None = None
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 0)
        lay.setSpacing(0)
        self.header = PaintedRow(COLUMNS)
        self.header.align_left = frozenset({0})
        self.header.setFixedHeight(row_height(self.font()))
        self.header.show_values(("Time", "Price", "Qty"), (theme.current().muted,) * 3)
        lay.addWidget(self.header)
        self.view = _Rows(self)
        lay.addWidget(self.view, 1)
        self.view.build(rows)

    def rows(self) -> list[TradeRow]:
        """Top-down: the newest trade first."""
        return list(self.view.rows)

    def render(self, tape: Tape) -> int:  # type: ignore[override]  # QWidget.render paints to a device
        """Show ``tape``; returns how many rows changed (0 when nothing new traded)."""
        self.tape = tape
        if self.toolTip() != tape.big_text:
            self.setToolTip(tape.big_text)
        changed = 0
        rows = tape.rows
        for i, row in enumerate(self.view.rows):
            changed += row.show_trade(rows[i] if i < len(rows) else None)
        return changed
