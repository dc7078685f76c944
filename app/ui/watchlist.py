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


class WatchlistModel(QtCore.QAbstractTableModel):
    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: tuple[WatchRow, ...] = ()
        self.keys: tuple[str, ...] = ()
        self.current: str | None = None

    def set_snapshot(self, snapshot: Watchlist) -> None:
        if snapshot.keys != self.keys:
            self.beginResetModel()
            self.rows, self.keys = snapshot.rows, snapshot.keys
            self.endResetModel()
            return
        old, self.rows = self.rows, snapshot.rows
        last = len(COLUMNS) - 1
        for i, (a, b) in enumerate(zip(old, snapshot.rows, strict=True)):
            if a != b:  # frozen rows: equal means every cell and tooltip is the same
                self.dataChanged.emit(self.index(i, 0), self.index(i, last))

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
            h = QtCore.Qt.AlignmentFlag.AlignRight if c.right else QtCore.Qt.AlignmentFlag.AlignLeft
            return h | QtCore.Qt.AlignmentFlag.AlignVCenter
        return None

    def data(self, index: QtCore.QModelIndex, role: int = Role.DisplayRole):
        if not index.isValid():
            return None
        r, c = self.rows[index.row()], COLUMNS[index.column()]
        if role == Role.DisplayRole:
            return c.text(r)
        if role == Role.ToolTipRole:
            return c.tip(r) or None
        if role == Role.TextAlignmentRole:
            h = QtCore.Qt.AlignmentFlag.AlignRight if c.right else QtCore.Qt.AlignmentFlag.AlignLeft
            return h | QtCore.Qt.AlignmentFlag.AlignVCenter
        if role == Role.ForegroundRole:
            # A stale symbol's numbers are grey (the pending dot keeps its colour): an old price must not look live.
            colour = theme.current().muted if r.stale and index.column() != 0 else c.colour(r)
            return QtGui.QBrush(QtGui.QColor(colour)) if colour else None
        if r.key == self.current:
            if role == Role.FontRole:
                font = QtGui.QFont()
                font.setBold(True)
                return font
            if role == Role.BackgroundRole:
                accent = QtGui.QColor(theme.current().accent)
                accent.setAlpha(40)
                return QtGui.QBrush(accent)
        return None


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
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        header.setHighlightSections(False)
        view.clicked.connect(self._chosen)
        view.installEventFilter(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(view)
        self.setMinimumWidth(0)  # a dock of any width: columns are hidden rather than pushing the window wider
        self._fitted: tuple[tuple[int, ...], int] | None = None  # the widths and room last fitted
        view.viewport().installEventFilter(self)

    def render(self, snapshot: Watchlist) -> None:
        self.model.set_snapshot(snapshot)
        self._fit()

    def needed_widths(self) -> tuple[int, ...]:
        """Each column's width for its widest text or its title."""
        view, header = self.view, self.view.horizontalHeader()
        return tuple(max(view.sizeHintForColumn(i), header.sectionSizeHint(i)) for i in range(len(COLUMNS)))

    def _fit(self) -> None:
        """Show every column that fits the dock's width, hiding whole ones in ``HIDE_ORDER`` when they do not."""
        view = self.view
        widths = self.needed_widths()
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
