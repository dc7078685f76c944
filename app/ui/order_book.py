"""The Order book dock: a price ladder of the symbol on screen, asks above and bids below the spread, each level with
its size, the cumulative size and a size bar; a click on a level puts its price in the ticket (``price_chosen``).

It renders ``app.view.book.BookLadder`` snapshots at the refresh rate (4 Hz, 20+ levels a side). The whole ladder is
one widget that paints its lines itself (``app.ui.painted_rows``): a refresh sets each level's line, and only the
lines that changed are painted again, in one request to Qt (a bar moving by less than a pixel is no change). The
same snapshot again paints nothing. The ladder keeps the touch in the middle at any height: lines that do not fit
are the farthest ones, hidden; the panel never asks for the height of the whole ladder (a dock must not push the
window past the screen).
"""

from __future__ import annotations

from decimal import Decimal

from PySide6 import QtCore, QtWidgets

from app.models import Side
from app.ui import theme
from app.ui.painted_rows import PAD, Line, PaintedRows, row_height
from app.view.book import LADDER_DEPTH, BookLadder, LadderLevel, step_text

__all__ = ["GROUPS", "LevelRow", "OrderBookPanel", "SpreadRow", "row_height"]

GROUPS = (1, 10, 100, 1000, 10_000)  # a level's width in ticks, offered to the trader
COLUMNS = (0.40, 0.30, 0.30)  # price, size, total: shares of the row's width
SPREAD_COLUMNS = (0.40, 0.60)  # mid, spread


class LevelRow(Line):
    """A level of the ladder; empty when the book has fewer levels than the ladder has rows."""

    __slots__ = ("_theme", "level")

    def __init__(self, view: PaintedRows) -> None:
        super().__init__(view)
        self.level: LadderLevel | None = None
        self._theme: object = None

    @property
    def clickable(self) -> bool:  # type: ignore[override]
        return self.level is not None

    def show_level(self, level: LadderLevel | None) -> bool:
        """True when the line changed (and will be painted again)."""
        t = theme.current()
        if level == self.level and t is self._theme:  # the same level in the same colours: nothing to compare
            return False
        self.level, self._theme = level, t
        if level is None:
            return self.show_values(("", "", ""), (None, None, None))
        side = t.down if level.side is Side.SELL else t.up
        return self.show_values((level.price_text, level.size_text, level.cum_text), (side, None, t.muted),
                                bar=level.bar, bar_color=side, bold=level.best, depth_bar=level.cum_bar,
                                short=(level.price_text, level.size_short, level.cum_short))

    def toolTip(self) -> str:
        lv = self.level
        if lv is None:
            return ""
        return (f"{lv.price_text} · size {lv.size_text} · total {lv.cum_text}\n"
                f"click: put {lv.price_text} in the ticket")


class SpreadRow(Line):
    """The line between asks and bids: the mid under the prices, the spread under size and total; or why the
    ladder is empty (resyncing, no book yet)."""

    __slots__ = ("tip",)
    columns = SPREAD_COLUMNS

    def __init__(self, view: PaintedRows) -> None:
        super().__init__(view)
        self.tip = ""

    def toolTip(self) -> str:
        return self.tip


class _Ladder(PaintedRows):
    """The header, then the lines laid out by hand: the spread line in the middle, asks above, bids below, as many
    as fit."""

    def __init__(self, panel: OrderBookPanel) -> None:
        super().__init__(COLUMNS, panel, header=("Price", "Size", "Total"))
        self.panel = panel
        self.setObjectName("bookLadder")
        self.setAccessibleName("Order book ladder")
        self.asks: list[LevelRow] = []  # top-down: slot 0 is the farthest ask
        self.bids: list[LevelRow] = []  # slot 0 is the best bid
        self.spread = SpreadRow(self)
        self.line_clicked.connect(lambda line: self.panel._choose(line.level))

    def build(self, depth: int) -> None:
        self.asks = [LevelRow(self) for _ in range(depth)]
        self.bids = [LevelRow(self) for _ in range(depth)]
        self.lines = [*self.asks, self.spread, *self.bids]  # top-down
        self._place_all()
        self.update()

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(240, self.line_height * (2 * len(self.asks) + 2))

    def minimumSizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(120, self.line_height * 4)  # the header, the touch and the spread, at the least

    def visible_per_side(self) -> int:
        h = self.line_height
        return max(1, min(len(self.asks), (self.height() - self.body_top - h) // (2 * h)))

    def place(self) -> None:
        h = self.line_height
        n = self.visible_per_side()
        mid_y = self.body_top + (self.height() - self.body_top - h) // 2
        self.spread.top, self.spread.visible = mid_y, True
        depth = len(self.asks)
        for slot, row in enumerate(self.asks):
            k = depth - slot  # 1: the line just above the spread
            row.top, row.visible = mid_y - k * h, k <= n
        for slot, row in enumerate(self.bids):
            row.top, row.visible = mid_y + (slot + 1) * h, slot < n


class OrderBookPanel(QtWidgets.QWidget):
    """The Order book dock's content. ``render(BookLadder)``; ``price_chosen(Decimal)`` when a level is clicked."""

    price_chosen = QtCore.Signal(object)  # a Decimal in the instrument's precision
    group_changed = QtCore.Signal(int)  # the trader chose a level's width in ticks (pass it to book_ladder)

    def __init__(self, depth: int = LADDER_DEPTH, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("orderBook")
        self.ladder: BookLadder | None = None
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 0)
        lay.setSpacing(0)
        self.status = QtWidgets.QLabel("no book yet")
        self.status.setObjectName("bookStatus")
        self.status.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.status.setContentsMargins(PAD, 0, PAD, 2)
        self.status.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.group = GROUPS[0]
        self._tick: Decimal | None = None
        self.step = QtWidgets.QComboBox()
        self.step.setObjectName("bookStep")
        self.step.setToolTip("The price step of one level: the levels within a step are summed "
                             "(asks rounded up, bids down)")
        self.step.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.step.currentIndexChanged.connect(self._step_chosen)
        top = QtWidgets.QHBoxLayout()
        top.setContentsMargins(0, 0, PAD, 0)
        top.setSpacing(4)
        top.addWidget(self.status, 1)
        top.addWidget(self.step)
        lay.addLayout(top)
        self._theme: object = None
        self.view = _Ladder(self)
        lay.addWidget(self.view, 1)
        self.view.build(depth)

    # ----- reads (tests, the lead) ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.view.asks)

    def ask_rows(self) -> list[LevelRow]:
        """Top-down, the farthest ask first."""
        return list(self.view.asks)

    def bid_rows(self) -> list[LevelRow]:
        """The best bid first."""
        return list(self.view.bids)

    def spread_text(self) -> str:
        """The line between asks and bids: the mid and the spread, or why the ladder is empty."""
        return "   ".join(t for t in self.view.spread.texts if t)

    # ----- render --------------------------------------------------------------------------------------------
    def render(self, ladder: BookLadder) -> None:  # type: ignore[override]  # QWidget.render paints to a device
        """Show ``ladder``: lines are made again only when its depth changes, otherwise their texts are set in
        place and the lines that changed painted again; the same snapshot (the view model's memo) does nothing."""
        t = theme.current()
        if ladder is self.ladder and t is self._theme:
            return
        self._theme = t
        if ladder.depth != self.depth:
            self.view.build(ladder.depth)
        self.ladder = ladder
        rows = self.view.asks
        pad = len(rows) - len(ladder.asks)  # a thin book: the asks sit just above the spread, blanks above them
        for slot, row in enumerate(rows):
            row.show_level(ladder.asks[slot - pad] if slot >= pad else None)
        for slot, row in enumerate(self.view.bids):
            row.show_level(ladder.bids[slot] if slot < len(ladder.bids) else None)
        line = self.view.spread
        if ladder.status == "SYNCED":
            line.show_values((ladder.mid_text, ladder.spread_text), (None, t.muted), bold=True)
            line.tip = ladder.spread_tip or f"mid {ladder.mid_text} · spread {ladder.spread_text}"
        else:
            line.show_values(("", ladder.status_text), (None, t.warn if ladder.status == "RESYNCING" else t.muted))
            line.tip = ladder.status_text
        self.view.commit()
        if ladder.tick != self._tick:
            self._steps(ladder.tick)
        status = f"{ladder.symbol} · {ladder.status_text}"
        if self.status.text() != status:
            self.status.setText(status)
            level = {"SYNCED": "ok", "RESYNCING": "warn"}.get(ladder.status, "muted")
            if self.status.property("level") != level:
                self.status.setProperty("level", level)
                color = {"ok": t.muted, "warn": t.warn}.get(level, t.muted)
                self.status.setStyleSheet(f"color: {color};")
            self.view.setAccessibleDescription(status)

    def _steps(self, tick: Decimal) -> None:
        """The steps offered, in the symbol's prices (its tick changed: another symbol)."""
        self._tick = tick
        blocked = self.step.blockSignals(True)
        self.step.clear()
        for g in GROUPS:
            self.step.addItem(step_text(tick, g), g)
        self.step.setCurrentIndex(GROUPS.index(self.group) if self.group in GROUPS else 0)
        self.step.blockSignals(blocked)

    def _step_chosen(self, index: int) -> None:
        group = self.step.itemData(index)
        if isinstance(group, int) and group != self.group:
            self.group = group
            self.group_changed.emit(group)

    def _choose(self, level: LadderLevel | None) -> None:
        if level is not None:
            self.price_chosen.emit(Decimal(level.price))
