"""The Order book dock: a price ladder of the symbol on screen, asks above and bids below the spread, each level with
its size, the cumulative size and a size bar; a click on a level puts its price in the ticket (``price_chosen``).

It renders ``app.view.book.BookLadder`` snapshots at the refresh rate (4 Hz, 20+ levels a side), so the rows are
built once and a refresh only sets what changed: each row paints its own texts and bar and repaints only when they
differ. The ladder keeps the touch in the middle at any height: rows that do not fit are the farthest ones, hidden;
the panel never asks for the height of the whole ladder (a dock must not push the window past the screen).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from PySide6 import QtCore, QtGui, QtWidgets

from app.models import Side
from app.ui import theme
from app.view.book import LADDER_DEPTH, BookLadder, LadderLevel, step_text

GROUPS = (1, 10, 100, 1000, 10_000)  # a level's width in ticks, offered to the trader
COLUMNS = (0.40, 0.30, 0.30)  # price, size, total: shares of the row's width
SPREAD_COLUMNS = (0.40, 0.60)  # mid, spread
PAD = 6  # pixels of margin at each side of a row


_COLOURS: dict[tuple[str, int], QtGui.QColor] = {}
_ADVANCES: dict[str, dict[str, int]] = {}  # a font's key: a text's width in it


def _colour(name: str, alpha: int = 255) -> QtGui.QColor:
    c = _COLOURS.get((name, alpha))
    if c is None:
        if len(_COLOURS) > 256:
            _COLOURS.clear()
        c = _COLOURS[(name, alpha)] = QtGui.QColor(name)
        c.setAlpha(alpha)
    return c


def row_height(font: QtGui.QFont) -> int:
    return QtGui.QFontMetrics(font).height() + 3


class PaintedRow(QtWidgets.QWidget):
    """One line of right-aligned texts over an optional bar, painted by itself (no child labels: a refresh that
    changes nothing costs a comparison). ``texts``: what it shows now, for tests and accessibility."""

    clicked = QtCore.Signal()

    def __init__(self, columns: tuple[float, ...], parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.columns = columns
        self.texts: tuple[str, ...] = ("",) * len(columns)
        self.short: tuple[str, ...] = ()  # a compact form of each text, drawn when the full one does not fit
        self.colors: tuple[str | None, ...] = (None,) * len(columns)  # None: the theme's text colour
        self.bar = 0.0  # 0..1 of the width, drawn from the right edge
        self.depth_bar = 0.0  # a fainter bar under it (the cumulative size)
        self.bar_color: str | None = None
        self.bold = False
        self.tint: str | None = None  # a background tint across the whole row
        self.align_left = frozenset[int]()  # columns aligned left (a time), the others right
        self._hover = False
        self._layout_key: tuple | None = None
        self._fm_key: tuple | None = None
        self._fm: tuple[QtGui.QFont, QtGui.QFontMetrics, Callable[[str], int]]
        self._placed: tuple[QtGui.QFont, tuple[tuple[int, int, str, int], ...]] = (QtGui.QFont(), ())
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent, False)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)

    def show_values(self, texts: tuple[str, ...], colors: tuple[str | None, ...], bar: float = 0.0,
                    bar_color: str | None = None, bold: bool = False, tint: str | None = None,
                    depth_bar: float = 0.0, short: tuple[str, ...] = ()) -> bool:
        """Set what the row shows; repaint only when something the trader sees changed (a bar is compared in
        pixels at the row's width). True when it did. ``short``: a compact form of each text ("17.3K"), drawn in a
        column too narrow for the full one."""
        if (texts == self.texts and colors == self.colors and bar_color == self.bar_color and bold == self.bold
                and tint == self.tint and short == self.short and self._px(bar) == self._px(self.bar)
                and self._px(depth_bar) == self._px(self.depth_bar)):
            return False
        self.texts, self.colors, self.bar, self.depth_bar, self.short = texts, colors, bar, depth_bar, short
        self.bar_color, self.bold, self.tint = bar_color, bold, tint
        self.update()
        return True

    def _px(self, fraction: float) -> int:
        """A bar's width in pixels, as painted (0: none)."""
        return max(1, round(self.width() * min(1.0, fraction))) if fraction > 0 else 0

    def enterEvent(self, event) -> None:
        self._hover = True
        self.update()
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:
        self._hover = False
        self.update()
        super().leaveEvent(event)

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:
        if event.button() == QtCore.Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(event)

    def paintEvent(self, event) -> None:
        t = theme.current()
        p = QtGui.QPainter(self)
        r = self.rect()
        if self.tint:
            p.fillRect(r, _colour(self.tint, 30))
        if self.bar_color:
            for fraction, alpha in ((self.depth_bar, 18), (self.bar, 60)):
                w = self._px(fraction)
                if w:
                    p.fillRect(r.right() - w + 1, r.top() + 1, w, r.height() - 2, _colour(self.bar_color, alpha))
        if self._hover and any(self.texts):
            p.fillRect(r, _colour(t.text, 22))
        font, placed = self._layout()
        p.setFont(font)
        for x, y, text, i in placed:
            p.setPen(_colour(self.colors[i] or t.text))
            p.drawText(x, y, text)
        p.end()

    def _font(self) -> QtGui.QFont:
        font = QtGui.QFont(self.font())
        font.setBold(self.bold)
        return font

    def _widths(self) -> list[int]:
        inner = self.width() - 2 * PAD
        return [round(inner * share) for share in self.columns]

    def _layout(self) -> tuple[QtGui.QFont, tuple[tuple[int, int, str, int], ...]]:
        """The font and where each text is drawn (x, baseline, the text as it fits, its column), made again only
        when the texts, the font or the row's size changed: a repaint is a few draw calls."""
        key = (self.texts, self.short, self.bold, self.width(), self.height(), self.align_left, self.font())
        if key == self._layout_key:
            return self._placed
        font, fm, advance = self._metrics()
        y = (self.height() - fm.height()) // 2 + fm.ascent()
        x = PAD
        placed = []
        for i, (w, text) in enumerate(zip(self._widths(), self._fitted(fm, advance), strict=True)):
            if text:
                left = x if i in self.align_left else x + max(0, w - 4 - advance(text))
                placed.append((left, y, text, i))
            x += w
        self._layout_key, self._placed = key, (font, tuple(placed))
        return self._placed

    def _metrics(self) -> tuple[QtGui.QFont, QtGui.QFontMetrics, Callable[[str], int]]:
        """The row's font (bold or not), its metrics and a text's width, measured once per text and font."""
        key = (self.font(), self.bold)
        if self._fm_key != key:
            font = self._font()
            fm = QtGui.QFontMetrics(font)
            widths = _ADVANCES.setdefault(font.key(), {})

            def advance(text: str) -> int:
                w = widths.get(text)
                if w is None:
                    if len(widths) > 8192:
                        widths.clear()
                    w = widths[text] = fm.horizontalAdvance(text)
                return w

            self._fm_key, self._fm = key, (font, fm, advance)
        return self._fm

    def _fitted(self, fm: QtGui.QFontMetrics, advance: Callable[[str], int]) -> tuple[str, ...]:
        out = []
        for i, (w, text) in enumerate(zip(self._widths(), self.texts, strict=True)):
            room = w - 4
            if text and advance(text) > room:
                if i < len(self.short) and self.short[i]:
                    text = self.short[i]
                if advance(text) > room:
                    text = fm.elidedText(text, QtCore.Qt.TextElideMode.ElideRight, room)
            out.append(text)
        return tuple(out)

    def drawn_texts(self) -> tuple[str, ...]:
        """What each column draws at the row's width: the full text where it fits, else its compact form, else
        the text cut with an ellipsis at its end (never a digit in half)."""
        _, fm, advance = self._metrics()
        return self._fitted(fm, advance)


class LevelRow(PaintedRow):
    """A level of the ladder; empty when the book has fewer levels than the ladder has rows."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(COLUMNS, parent)
        self.level: LadderLevel | None = None
        self._theme: object = None

    def show_level(self, level: LadderLevel | None) -> bool:
        t = theme.current()
        if level == self.level and t is self._theme:  # the same level in the same colours: nothing to compare
            return False
        self.level, self._theme = level, t
        if level is None:
            changed = self.show_values(("", "", ""), (None, None, None))
            if changed:
                self.setToolTip("")
                self.unsetCursor()
            return changed
        side = t.down if level.side is Side.SELL else t.up
        changed = self.show_values((level.price_text, level.size_text, level.cum_text), (side, None, t.muted),
                                   bar=level.bar, bar_color=side, bold=level.best, depth_bar=level.cum_bar,
                                   short=(level.price_text, level.size_short, level.cum_short))
        if changed:
            self.setToolTip(f"{level.price_text} · size {level.size_text} · total {level.cum_text}\n"
                            f"click: put {level.price_text} in the ticket")
            self.setCursor(QtCore.Qt.CursorShape.PointingHandCursor)
        return changed


class _Ladder(QtWidgets.QWidget):
    """The rows, laid out by hand: the spread line in the middle, asks above, bids below, as many as fit."""

    def __init__(self, panel: OrderBookPanel) -> None:
        super().__init__(panel)
        self.panel = panel
        self.asks: list[LevelRow] = []  # top-down: slot 0 is the farthest ask
        self.bids: list[LevelRow] = []  # slot 0 is the best bid
        # the mid under the prices, the spread under size and total
        self.spread = PaintedRow(SPREAD_COLUMNS, self)
        self.spread.setObjectName("bookSpread")
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)

    def build(self, depth: int) -> None:
        for row in (*self.asks, *self.bids):
            row.deleteLater()
        self.asks = [self._row() for _ in range(depth)]
        self.bids = [self._row() for _ in range(depth)]
        self._place()

    def _row(self) -> LevelRow:
        row = LevelRow(self)
        row.clicked.connect(lambda row=row: self.panel._choose(row.level))
        return row

    def sizeHint(self) -> QtCore.QSize:
        h = row_height(self.font())
        return QtCore.QSize(240, h * (2 * len(self.asks) + 1))

    def minimumSizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(120, row_height(self.font()) * 3)  # the touch and the spread, at the least

    def resizeEvent(self, event) -> None:
        self._place()
        super().resizeEvent(event)

    def visible_per_side(self) -> int:
        h = row_height(self.font())
        return max(1, min(len(self.asks), (self.height() - h) // (2 * h)))

    def _place(self) -> None:
        h = row_height(self.font())
        w = self.width()
        n = self.visible_per_side()
        mid_y = (self.height() - h) // 2
        self.spread.setGeometry(0, mid_y, w, h)
        depth = len(self.asks)
        for slot, row in enumerate(self.asks):
            k = depth - slot  # 1: the row just above the spread
            row.setVisible(k <= n)
            row.setGeometry(0, mid_y - k * h, w, h)
        for slot, row in enumerate(self.bids):
            row.setVisible(slot < n)
            row.setGeometry(0, mid_y + (slot + 1) * h, w, h)


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
        self.header = PaintedRow(COLUMNS)
        self.header.setFixedHeight(row_height(self.font()))
        self.header.show_values(("Price", "Size", "Total"), (theme.current().muted,) * 3)
        lay.addWidget(self.header)
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
        """Show ``ladder``: rows are rebuilt only when its depth changes, otherwise their texts are set in place."""
        if ladder.depth != self.depth:
            self.view.build(ladder.depth)
        self.ladder = ladder
        rows = self.view.asks
        pad = len(rows) - len(ladder.asks)  # a thin book: the asks sit just above the spread, blanks above them
        for slot, row in enumerate(rows):
            row.show_level(ladder.asks[slot - pad] if slot >= pad else None)
        for slot, row in enumerate(self.view.bids):
            row.show_level(ladder.bids[slot] if slot < len(ladder.bids) else None)
        t = theme.current()
        line = self.view.spread
        if ladder.status == "SYNCED":
            line.show_values((ladder.mid_text, ladder.spread_text), (None, t.muted), bold=True)
            tip = ladder.spread_tip or f"mid {ladder.mid_text} · spread {ladder.spread_text}"
        else:
            line.show_values(("", ladder.status_text), (None, t.warn if ladder.status == "RESYNCING" else t.muted))
            tip = ladder.status_text
        if line.toolTip() != tip:
            line.setToolTip(tip)
        if ladder.tick != self._tick:
            self._steps(ladder.tick)
        status = f"{ladder.symbol} · {ladder.status_text}"
        if self.status.text() != status:
            self.status.setText(status)
            level = {"SYNCED": "ok", "RESYNCING": "warn"}.get(ladder.status, "muted")
            if self.status.property("level") != level:
                self.status.setProperty("level", level)
                color = {"ok": theme.current().muted, "warn": theme.current().warn}.get(level, theme.current().muted)
                self.status.setStyleSheet(f"color: {color};")

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
