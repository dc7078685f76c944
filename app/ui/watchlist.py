"""The Watchlist dock: every feed symbol on one dense line (last, change this session and over 24 h, spread), a dot
for a pending proposal; a click or Enter on a row shows that symbol (``symbol_chosen``).

It paints ``app.view.watchlist.Watchlist`` snapshots: texts come formatted; rows are keyed by symbol and updated in
place (only the rows whose cells changed are signalled), rebuilt only when the symbols change, so the selection
and the scroll position stay put at any refresh rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6 import QtCore, QtGui, QtWidgets

from app.ui import theme
from app.ui.panel_keys import WATCHLIST_CHOOSE
from app.view.watchlist import Watchlist, WatchRow

Role = QtCore.Qt.ItemDataRole


def _colour(direction: str) -> str | None:
    t = theme.current()
    return t.up if direction == "up" else t.down if direction == "down" else None


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    header_tip: str
    text: Callable[[WatchRow], str]
    tip: Callable[[WatchRow], str]
    colour: Callable[[WatchRow], str | None] = lambda r: None
    right: bool = True


COLUMNS: tuple[Column, ...] = (
    Column("", "● a proposal for this symbol waits for your approval", lambda r: "●" if r.pending else "",
           lambda r: r.tooltip if r.pending else "", lambda r: theme.current().accent if r.pending else None,
           right=False),
    Column("Symbol", "Click a symbol (or Enter) to show it", lambda r: r.symbol, lambda r: r.tooltip, right=False),
    Column("Last", "The last trade's price", lambda r: r.last, lambda r: r.last_tip, lambda r: _colour(r.tick)),
    Column("Session", "Change since the first trade this session saw (history loaded at start is not counted)",
           lambda r: r.change, lambda r: r.change_tip, lambda r: _colour(r.direction)),
    Column("24 h", "The exchange's own 24 h change, where it gives one", lambda r: r.change_24h,
           lambda r: r.change_24h_tip, lambda r: _colour(r.direction_24h)),
    Column("Spread", "Ask − bid in basis points (bps) of the mid price; the spread in price in the tooltip",
           lambda r: r.spread_bps, lambda r: r.spread_tip),
)
_SYMBOL = 1
# Columns hidden whole, in this order, when the dock is too narrow for all of them (the least important first);
# the marker, Symbol and Last are always shown.
HIDE_ORDER: tuple[str, ...] = ("Spread", "24 h", "Session")


_DISPLAY, _TIP, _ALIGN, _FG = (int(r) for r in (Role.DisplayRole, Role.ToolTipRole, Role.TextAlignmentRole,
                                                 Role.ForegroundRole))
_FONT, _BACKGROUND = int(Role.FontRole), int(Role.BackgroundRole)
_ALIGNS = tuple((QtCore.Qt.AlignmentFlag.AlignRight if c.right else QtCore.Qt.AlignmentFlag.AlignLeft)
                | QtCore.Qt.AlignmentFlag.AlignVCenter for c in COLUMNS)
Cell = tuple[str, str, "str | None"]  # text, tooltip, colour: what a cell shows (compared to signal a change)


def row_cells(r: WatchRow) -> tuple[Cell, ...]:
    """What each cell of ``r`` shows, in the theme of the moment."""
    muted = theme.current().muted if r.stale else None  # a stale symbol's numbers are grey (not the pending dot)
    return tuple((c.text(r), c.tip(r), muted if muted and i != 0 else c.colour(r)) for i, c in enumerate(COLUMNS))


class WatchlistModel(QtCore.QAbstractTableModel):
    """The rows' cells are made once per changed row of a snapshot (every role Qt asks for is looked up, never
    computed in ``data``), and only the cells whose text, tooltip or colour changed are signalled."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: tuple[WatchRow, ...] = ()
        self.keys: tuple[str, ...] = ()
        self.current: str | None = None
        self.cells: list[tuple[Cell, ...]] = []
        self._roles: list[list[dict[int, object]]] = []  # row, column: role -> value
        self._theme: object = None
        self._brushes: dict[str, QtGui.QBrush] = {}
        self._font = QtGui.QFont()
        self._font.setBold(True)
        self._tint = QtGui.QBrush()

    def _brush(self, colour: str | None) -> QtGui.QBrush | None:
        if colour is None:
            return None
        b = self._brushes.get(colour)
        if b is None:
            b = self._brushes[colour] = QtGui.QBrush(QtGui.QColor(colour))
        return b

    def _role_map(self, column: int, cell: Cell) -> dict[int, object]:
        text, tip, colour = cell
        return {_DISPLAY: text, _TIP: tip or None, _ALIGN: _ALIGNS[column], _FG: self._brush(colour)}

    def _set_theme(self) -> bool:
        t = theme.current()
        if t is self._theme:
            return False
        self._theme = t
        self._brushes.clear()
        accent = QtGui.QColor(t.accent)
        accent.setAlpha(40)
        self._tint = QtGui.QBrush(accent)
        return True

    def set_snapshot(self, snapshot: Watchlist) -> None:
        new_theme = self._set_theme()
        if snapshot.keys != self.keys:
            self.beginResetModel()
            self.rows, self.keys = snapshot.rows, snapshot.keys
            self.cells = [row_cells(r) for r in self.rows]
            self._roles = [[self._role_map(i, cell) for i, cell in enumerate(c)] for c in self.cells]
            self.endResetModel()
            return
        old, self.rows = self.rows, snapshot.rows
        for i, (a, b) in enumerate(zip(old, snapshot.rows, strict=True)):
            if a == b and not new_theme:  # frozen rows: equal means every cell and tooltip is the same
                continue
            before, after = self.cells[i], row_cells(b)
            if before == after:
                continue
            self.cells[i] = after
            roles = self._roles[i]
            for c, (x, y) in enumerate(zip(before, after, strict=True)):
                if x != y:
                    roles[c] = self._role_map(c, y)
                    index = self.index(i, c)
                    self.dataChanged.emit(index, index)

    def set_current(self, symbol: str | None) -> None:
        before = self.current
        self.current = symbol
        for s in {before, symbol}:
            if s in self.keys:
                i = self.keys.index(s)
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def symbol_at(self, row: int) -> str | None:
        return self.keys[row] if 0 <= row < len(self.keys) else None

    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation, role: int = Role.DisplayRole):
        if orientation != QtCore.Qt.Orientation.Horizontal:
            return None
        c = COLUMNS[section]
        if role == Role.DisplayRole:
            return c.title
        if role == Role.ToolTipRole:
            return c.header_tip
        if role == Role.TextAlignmentRole:
            return _ALIGNS[section]
        return None

    def data(self, index: QtCore.QModelIndex, role: int = Role.DisplayRole):
        row = index.row()
        if not 0 <= row < len(self._roles):
            return None
        value = self._roles[row][index.column()].get(role)
        if value is None and self.keys[row] == self.current:
            if role == _FONT:
                return self._font
            if role == _BACKGROUND:
                return self._tint
        return value


class WatchlistPanel(QtWidgets.QWidget):
    """``render(snapshot)`` on the UI timer; ``set_current(symbol)`` when the chart shows another symbol."""

    symbol_chosen = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = WatchlistModel(self)
        view = self.view = QtWidgets.QTableView(self)
        view.setObjectName("watchlist")
        view.setModel(self.model)
        view.verticalHeader().setVisible(False)
        view.verticalHeader().setDefaultSectionSize(18)
        view.verticalHeader().setMinimumSectionSize(16)
        view.setShowGrid(False)
        view.setWordWrap(False)
        view.setAlternatingRowColors(True)
        view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        view.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        # Never a horizontal scrollbar: scrolling it hid the Symbol; a narrow dock hides whole columns instead (_fit).
        view.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = view.horizontalHeader()
        header.setMinimumSectionSize(14)
        # Widths are set by _fit, not by Qt measuring every cell of every row at each refresh (ResizeToContents did).
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        header.setStretchLastSection(False)
        header.setHighlightSections(False)
        view.clicked.connect(self._chosen)
        view.installEventFilter(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(view)
        self.setMinimumWidth(0)  # a dock of any width: columns are hidden rather than pushing the window wider
        self._fitted: tuple[tuple[int, ...], int] | None = None  # the widths and room last fitted
        self._widths: tuple[int, ...] | None = None  # needed_widths() when last measured
        self._text_widths: tuple[int, ...] | None = None  # the widest text of each column then (text_widths())
        self._advance: dict[tuple[str, bool], int] = {}
        view.viewport().installEventFilter(self)

    def render(self, snapshot: Watchlist) -> None:
        self.model.set_snapshot(snapshot)
        self._fit()

    def text_widths(self) -> tuple[int, ...]:
        """Each column's widest text in pixels (the current symbol's row bold): the columns are measured again
        only when one of these changes (a price gains a digit, another symbol is current), not at every refresh."""
        fm, bold = self.view.fontMetrics(), None
        cache = self._advance
        if len(cache) > 4096:
            cache.clear()
        m = self.model
        widths = [0] * len(COLUMNS)
        for key, cells in zip(m.keys, m.cells, strict=True):
            is_bold = key == m.current
            for i, (text, _, _) in enumerate(cells):
                w = cache.get((text, is_bold))
                if w is None:
                    if is_bold and bold is None:
                        font = QtGui.QFont(self.view.font())
                        font.setBold(True)
                        bold = QtGui.QFontMetrics(font)
                    w = cache[(text, is_bold)] = (bold if is_bold else fm).horizontalAdvance(text)  # type: ignore[union-attr]
                if w > widths[i]:
                    widths[i] = w
        return tuple(widths)

    def needed_widths(self) -> tuple[int, ...]:
        """Each column's width for its widest text or its title."""
        view, header = self.view, self.view.horizontalHeader()
        return tuple(max(view.sizeHintForColumn(i), header.sectionSizeHint(i)) for i in range(len(COLUMNS)))

    def _fit(self) -> None:
        """Show every column that fits the dock's width, hiding whole ones in ``HIDE_ORDER`` when they do not."""
        view = self.view
        texts = self.text_widths()
        if self._widths is None or texts != self._text_widths:
            self._widths, self._text_widths = self.needed_widths(), texts
            header = view.horizontalHeader()
            for i, w in enumerate(self._widths):
                if header.sectionSize(i) != w and w > 0:
                    header.resizeSection(i, w)
        widths = self._widths
        room = view.viewport().width()
        if (widths, room) == self._fitted:
            return
        self._fitted = (widths, room)
        titles = [c.title for c in COLUMNS]
        hidden: set[int] = set()
        used = sum(widths)
        for title in HIDE_ORDER:
            if used <= room:
                break
            i = titles.index(title)
            hidden.add(i)
            used -= widths[i]
        for i in range(len(COLUMNS)):
            if view.isColumnHidden(i) != (i in hidden):
                view.setColumnHidden(i, i in hidden)

    def set_current(self, symbol: str | None) -> None:
        """Highlight the symbol on screen (bold, tinted); no row for a symbol the list does not hold."""
        self.model.set_current(symbol)
        self._fit()

    def sizeHint(self) -> QtCore.QSize:
        """The rows' height (the header and one line a symbol, not more) and the columns' width, at most 330 px."""
        view = self.view
        frame = 2 * view.frameWidth()
        rows = max(1, self.model.rowCount())
        h = view.horizontalHeader().sizeHint().height() + rows * view.verticalHeader().defaultSectionSize() + frame
        w = sum(self.needed_widths()) + frame + view.verticalScrollBar().sizeHint().width()
        return QtCore.QSize(max(200, min(330, w)), h)

    def _chosen(self, index: QtCore.QModelIndex) -> None:
        symbol = self.model.symbol_at(index.row()) if index.isValid() else None
        if symbol is not None:
            self.symbol_chosen.emit(symbol)

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if obj is self.view.viewport() and event.type() == QtCore.QEvent.Type.Resize:
            self._fit()
            return False
        if (obj is self.view and event.type() == QtCore.QEvent.Type.KeyPress
                and event.key() in WATCHLIST_CHOOSE.qt_keys):  # type: ignore[attr-defined]
            self._chosen(self.view.currentIndex())
            return True
        return super().eventFilter(obj, event)
