"""The Trades dock: time and sales of the symbol on screen, newest on top, the price in the aggressor's colour (a buy
lifted the offer, a sell hit the bid), big prints bold on a tint.

It renders ``app.view.book.Tape`` snapshots. The whole tape is one widget that paints its lines itself
(``app.ui.painted_rows``): a refresh gives each line the trade of its place, and only the lines whose trade changed
are painted again, in one request to Qt (an unchanged tape, or the same snapshot again, paints nothing). Lines that
do not fit the dock are hidden from the bottom: the tape never asks for its whole height.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.models import Side
from app.ui import theme
from app.ui.painted_rows import Line, PaintedRows
from app.view.book import TAPE_ROWS, Tape, TapeRow

COLUMNS = (0.38, 0.34, 0.28)  # time, price, qty


class TradeRow(Line):
    """A trade of the tape; empty when fewer trades than lines."""

    __slots__ = ("_big", "_theme", "key")

    def __init__(self, view: PaintedRows) -> None:
        super().__init__(view)
        self.key = ""
        self._big = False
        self._theme: object = None

    def show_trade(self, row: TapeRow | None) -> bool:
        """True when the line changed (and will be painted again)."""
        key, big = ("", False) if row is None else (row.key, row.big)
        t = theme.current()
        if key == self.key and big == self._big and t is self._theme:
            return False
        self.key, self._big, self._theme = key, big, t
        if row is None:
            return self.show_values(("", "", ""), (None, None, None))
        side = t.up if row.side is Side.BUY else t.down
        # a narrow dock drops the hour, not the milliseconds: "09:39.312" rather than "18:09:39.3…"
        self.show_values((row.time_text, row.price_text, row.qty_text), (t.muted, side, side if row.big else None),
                         bold=row.big, tint=side if row.big else None, short=(row.time_text[3:], "", ""))
        return True


class _Rows(PaintedRows):
    """The header, then one line per trade top-down, as many as fit."""

    def __init__(self, parent: QtWidgets.QWidget) -> None:
        super().__init__(COLUMNS, parent, align_left=frozenset({0}), header=("Time", "Price", "Qty"))
        self.setObjectName("tapeRows")
        self.setAccessibleName("Trades, newest first")
        self.rows: list[TradeRow] = []

    def build(self, n: int) -> None:
        self.rows = [TradeRow(self) for _ in range(n)]
        self.lines = list(self.rows)
        self._place_all()
        self.update()

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(240, self.line_height * (len(self.rows) + 1))

    def minimumSizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(120, self.line_height * 3)  # the header and two trades

    def place(self) -> None:
        h = self.line_height
        fit = max(1, (self.height() - self.body_top) // h)
        for i, row in enumerate(self.rows):
            row.top, row.visible = self.body_top + i * h, i < fit


def _pushed_down(before: list[tuple[str, bool]], after: list[tuple[str, bool]]) -> int:
    """How many places the trade on top before has moved down (0: it has not, or it is gone, or there was none)."""
    top = before[0][0] if before else ""
    if not top:
        return 0
    for k, (key, _) in enumerate(after):
        if key == top:
            return k
    return 0


class TapePanel(QtWidgets.QWidget):
    """The Trades dock's content: ``render(Tape)``, newest on top."""

    def __init__(self, rows: int = TAPE_ROWS, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tape")
        self.tape: Tape | None = None
        self._theme: object = None
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 0)
        lay.setSpacing(0)
        self.view = _Rows(self)
        lay.addWidget(self.view, 1)
        self.view.build(rows)

    def rows(self) -> list[TradeRow]:
        """Top-down: the newest trade first."""
        return list(self.view.rows)

    def render(self, tape: Tape) -> int:  # type: ignore[override]  # QWidget.render paints to a device
        """Show ``tape``; returns how many lines changed (0 when nothing new traded or it is the same snapshot)."""
        t = theme.current()
        if tape is self.tape and t is self._theme:
            return 0
        themed = t is self._theme  # the colours on screen are this theme's
        self.tape, self._theme = tape, t
        if self.toolTip() != tape.big_text:
            self.setToolTip(tape.big_text)  # the "what counts as big" of every line
        lines = self.view.rows
        before = [(line.key, line._big) for line in lines]  # what is on screen (unless a paint is still due)
        changed = 0
        rows = tape.rows
        for i, line in enumerate(lines):
            changed += line.show_trade(rows[i] if i < len(rows) else None)
        k = _pushed_down(before, [(line.key, line._big) for line in lines]) if themed else 0
        if k:  # k new trades on top: the rest moved down k lines, Qt moves their pixels instead of painting them
            self.view.shift_down(k, [line for j, line in enumerate(lines[k:], k)
                                     if (line.key, line._big) == before[j - k]])
        self.view.commit()
        if changed and rows:  # for a screen reader: the newest trade in words
            top = rows[0]
            self.view.setAccessibleDescription(
                f"last trade {'buy' if top.side is Side.BUY else 'sell'} {top.qty_text} at {top.price_text}, "
                f"{top.time_text}")
        return changed
