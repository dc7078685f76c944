"""The Orders dock: working orders, orders, fills, positions and the trade history, as table models with declared
columns (as vnpy's monitors do). It renders ``app.view.blotter.BlotterView`` snapshots and never walks the desk.

Rows are keyed (order id, fill id, symbol; vnpy's ``data_key``) and updated in place: a refresh inserts new rows,
removes gone ones and signals ``dataChanged`` for rows whose cells changed. Never a model reset, which would drop the
trader's selection (and the working order the ticket is about to cancel) four times a second.

Columns: numbers first, each at a width that holds its text (a fee in a coin, "0.00001 BTC", included), headers
aligned as their cells; the order id last, whole when there is room, else elided in the middle with the full id in
its tooltip and copyable (context menu, Ctrl+C)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.market.instruments import Instrument, defaults_for
from app.models import Fill, Order, Position
from app.ui import theme
from app.view.blotter import (
    BlotterView,
    ClosedRow,
    DeskBlotter,
    FillRow,
    OrderRow,
    PnlRow,
    PositionRow,
    fill_row,
    order_row,
)

ID_CHARS = 17  # an id column's width in digits (a paper id is 16); a longer id elides in the middle


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    value: Callable[[Any], Any]
    align_right: bool = True
    colour: Callable[[Any], str | None] | None = None
    tooltip: Callable[[Any], str | None] | None = None
    is_id: bool = False  # copyable; elided in the middle, never cut at its end
    shown: bool = True  # False: hidden until the trader shows it (the header's context menu); its text is in a tooltip


def _side_colour(side: str) -> str | None:
    t = theme.current()
    return t.up if side in ("BUY", "LONG") else t.down if side in ("SELL", "SHORT") else None


def _sign_colour(sign: int) -> str | None:
    t = theme.current()
    return t.up if sign > 0 else t.down if sign < 0 else None


def _order_tip(r: OrderRow) -> str:
    return f"order {r.order_id} · {r.origin} · {r.time_utc}" + (f"\n{r.note}" if r.note else "")


def _fill_tip(r: FillRow) -> str:
    return f"fill {r.fill_id} of order {r.order_id} · {r.time_utc}"


def _order_columns() -> tuple[Column, ...]:
    """What the Working and Orders tables both start with."""
    return (
        Column("Time", lambda r: r.time, False, tooltip=lambda r: r.time_utc),
        Column("Symbol", lambda r: r.symbol, False),
        Column("Side", lambda r: r.side, False, colour=lambda r: _side_colour(r.side)),
        Column("Type", lambda r: r.type, False),
        Column("Qty", lambda r: r.qty),
        Column("Price", lambda r: r.price),
        Column("Filled", lambda r: r.filled),
    )


def working_columns() -> tuple[Column, ...]:
    return (
        *_order_columns(),
        Column("Status", lambda r: r.status, False),
        Column("Origin", lambda r: r.origin, False, shown=False),  # in the id's tooltip; the header's menu shows it
        Column("Order id", lambda r: r.order_id, False, tooltip=_order_tip, is_id=True),
    )


def history_order_columns() -> tuple[Column, ...]:
    return (
        *_order_columns(),
        Column("Avg", lambda r: r.avg),
        Column("Status", lambda r: r.status, False, tooltip=lambda r: r.note or None),
        Column("Order id", lambda r: r.order_id, False, tooltip=_order_tip, is_id=True),
        Column("Origin", lambda r: r.origin, False, shown=False),  # in the id's tooltip
        Column("Note", lambda r: r.note, False, tooltip=lambda r: r.note or None, shown=False),  # Status's tooltip
    )


def fill_row_columns() -> tuple[Column, ...]:
    return (
        Column("Time", lambda r: r.time, False, tooltip=lambda r: r.time_utc),
        Column("Symbol", lambda r: r.symbol, False),
        Column("Side", lambda r: r.side, False, colour=lambda r: _side_colour(r.side)),
        Column("Qty", lambda r: r.qty),
        Column("Price", lambda r: r.price),
        Column("Fee", lambda r: r.fee),
        Column("Liq.", lambda r: r.liquidity, False),
        Column("Order id", lambda r: r.order_id, False, tooltip=_fill_tip, is_id=True),
    )


def position_row_columns() -> tuple[Column, ...]:
    return (
        Column("Symbol", lambda r: r.symbol, False),
        Column("Side", lambda r: r.side, False, colour=lambda r: _side_colour(r.side)),
        Column("Qty", lambda r: r.qty, colour=lambda r: _side_colour(r.side)),
        Column("Avg price", lambda r: r.avg),
        Column("Mark", lambda r: r.mark),
        Column("Unrealised", lambda r: r.unrealised, colour=lambda r: _sign_colour(r.unrealised_sign),
               tooltip=lambda r: "this position's unrealised PnL at the mark, quote currency"),
        Column("Realised", lambda r: r.realised, colour=lambda r: _sign_colour(r.realised_sign),
               tooltip=lambda r: "realised on this position so far (partial exits), after fees"),
        Column("Fees", lambda r: r.fees),
        Column("Opened", lambda r: r.opened, False),
    )


def _closed_tip(r: ClosedRow) -> str:
    return (f"opened {r.opened}, closed {r.closed}; entry {r.entry}, exit {r.exit}; "
            f"after fees ({r.fees}), {r.fills} fills")


def closed_columns() -> tuple[Column, ...]:
    """Exit, Fees and Opened hidden by default (in the row's tooltip): the History tab shares its width with the
    totals and must not scroll sideways at 1280 px."""
    return (
        Column("Closed", lambda r: r.closed, False, tooltip=_closed_tip),
        Column("Symbol", lambda r: r.symbol, False, tooltip=_closed_tip),
        Column("Side", lambda r: r.side, False, colour=lambda r: _side_colour(r.side), tooltip=_closed_tip),
        Column("Realised", lambda r: r.realised, colour=lambda r: _sign_colour(r.realised_sign),
               tooltip=_closed_tip),
        Column("Qty", lambda r: r.qty, tooltip=lambda r: "the largest size held"),
        Column("Entry", lambda r: r.entry, tooltip=_closed_tip),
        Column("Exit", lambda r: r.exit, tooltip=_closed_tip, shown=False),
        Column("Fees", lambda r: r.fees, tooltip=_closed_tip, shown=False),
        Column("Opened", lambda r: r.opened, False, tooltip=_closed_tip, shown=False),
    )


def pnl_columns(first: str) -> tuple[Column, ...]:
    def tip(r: PnlRow) -> str:
        return f"realised after fees; fees {r.fees}; {r.closed} positions closed; {r.fills} fills"
    return (
        Column(first, lambda r: r.label, False),
        Column("Realised", lambda r: r.realised, colour=lambda r: _sign_colour(r.realised_sign),
               tooltip=tip),
        Column("Trades", lambda r: str(r.closed), tooltip=tip, shown=False),
        Column("Fees", lambda r: r.fees, tooltip=tip, shown=False),  # in the tooltips
    )


# ----- the same columns over orders, fills and positions (tables and tests built from domain objects) -------------
def _no_instrument(symbol: str) -> Instrument | None:
    return None


def _inst(instrument_of: Callable[[str], Instrument | None], symbol: str, v: Decimal | None) -> Instrument:
    """Its instrument; unknown filters: about five significant digits from the price itself."""
    return instrument_of(symbol) or defaults_for(symbol, v)


def _over(columns: Sequence[Column], convert: Callable[[Any], Any]) -> tuple[Column, ...]:
    def wrap(f: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
        return None if f is None else (lambda x: f(convert(x)))
    return tuple(replace(c, value=wrap(c.value), colour=wrap(c.colour), tooltip=wrap(c.tooltip)) for c in columns)


def order_columns(inst: Callable[[str], Instrument | None] = _no_instrument) -> tuple[Column, ...]:
    def convert(o: Order) -> OrderRow:
        ref = o.request.limit_price or o.request.stop_price or o.avg_price
        return order_row(o, _inst(inst, o.symbol, ref), o.created_ms)
    return _over(history_order_columns(), convert)


def fill_columns(inst: Callable[[str], Instrument | None] = _no_instrument) -> tuple[Column, ...]:
    return _over(fill_row_columns(), lambda f: fill_row(f, _inst(inst, f.symbol, f.price), f.exchange_ms))


def position_columns(unrealized: Callable[[str], Decimal], mark: Callable[[str], Decimal | None],
                     inst: Callable[[str], Instrument | None] = _no_instrument) -> tuple[Column, ...]:
    from app.view.blotter import _position_row

    def convert(p: Position) -> PositionRow:
        return _position_row(p, _inst(inst, p.symbol, p.avg_price), mark(p.symbol), None, 0, None)
    return _over(position_row_columns(), convert)


ORDER_COLUMNS = order_columns()  # without instruments: precision from each price
FILL_COLUMNS = fill_columns()


def _id(row: Order | Fill) -> str:
    return row.id


def _symbol(row: Position) -> str:
    return row.symbol


def _key(row: Any) -> str:
    return row.key


# ----- the model ----------------------------------------------------------------------------------------------------
class DeclaredTableModel(QtCore.QAbstractTableModel):
    def __init__(self, columns: Sequence[Column], key: Callable[[Any], Hashable] = _key,
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.columns = tuple(columns)
        self.key = key
        # Snapshot rows (keyed by ``.key``) are frozen: the very same row object shows the very same cells.
        self._frozen_rows = key is _key
        self._rows: list[Any] = []
        self._keys: list[Hashable] = []
        # What each row's cells showed last: text and colour per column. Rows may be the same object mutated in
        # place (an order filling), so "changed" is judged by what the trader would see, not by identity.
        self._cells: list[tuple[tuple[str, str | None], ...]] = []

    def _render(self, item: Any) -> tuple[tuple[str, str | None], ...]:
        return tuple((str(c.value(item)), c.colour(item) if c.colour is not None else None) for c in self.columns)

    @property
    def keys(self) -> tuple[Hashable, ...]:
        return tuple(self._keys)

    def set_rows(self, rows: Sequence[Any]) -> None:
        """Show ``rows`` (in this order) with the fewest changes: removes, inserts, then changed cells."""
        rows = list(rows)
        keys = [self.key(r) for r in rows]
        wanted = set(keys)
        if len(wanted) != len(keys):  # a key shown twice would be one row anyway: the first one wins
            seen: set[Hashable] = set()
            rows = [r for r, k in zip(rows, keys, strict=True) if not (k in seen or seen.add(k))]
            keys = [self.key(r) for r in rows]
        # 1. rows that are gone, bottom up so the indexes still to remove stay valid
        i = len(self._keys) - 1
        while i >= 0:
            if self._keys[i] in wanted:
                i -= 1
                continue
            last = i
            while i >= 0 and self._keys[i] not in wanted:
                i -= 1
            self.beginRemoveRows(QtCore.QModelIndex(), i + 1, last)
            del self._rows[i + 1:last + 1], self._keys[i + 1:last + 1], self._cells[i + 1:last + 1]
            self.endRemoveRows()
        # 2. the rows kept must be in the new order; if not (rare: a re-sort), move them as a layout change
        present = set(self._keys)
        kept = [k for k in keys if k in present]
        if kept != self._keys:
            self._reorder(kept)
        # 3. new rows where they belong, then changed cells of the rows kept
        changed: list[int] = []
        i = 0
        while i < len(rows):
            if i < len(self._keys) and self._keys[i] == keys[i]:
                if self._frozen_rows and self._rows[i] is rows[i]:
                    i += 1
                    continue
                self._rows[i] = rows[i]
                cells = self._render(rows[i])
                if cells != self._cells[i]:
                    self._cells[i] = cells
                    changed.append(i)
                i += 1
                continue
            # keys[i] is new; the new rows run up to the next kept row (the kept rows are in order already)
            end = keys.index(self._keys[i], i) if i < len(self._keys) else len(rows)
            self.beginInsertRows(QtCore.QModelIndex(), i, end - 1)
            self._rows[i:i] = rows[i:end]
            self._keys[i:i] = keys[i:end]
            self._cells[i:i] = [self._render(r) for r in rows[i:end]]
            self.endInsertRows()
            i = end
        last_col = len(self.columns) - 1
        for r in changed:
            self.dataChanged.emit(self.index(r, 0), self.index(r, last_col))

    def _reorder(self, order: list[Hashable]) -> None:
        """Rows kept, put in ``order``; selections and other persistent indexes follow their rows."""
        self.layoutAboutToBeChanged.emit()
        where = {k: n for n, k in enumerate(self._keys)}
        old_rows = [where[k] for k in order]
        self._rows = [self._rows[n] for n in old_rows]
        self._cells = [self._cells[n] for n in old_rows]
        self._keys = list(order)
        new_row = {old: new for new, old in enumerate(old_rows)}
        for idx in self.persistentIndexList():
            self.changePersistentIndex(idx, self.index(new_row[idx.row()], idx.column()))
        self.layoutChanged.emit()

    def row(self, i: int) -> Any:
        return self._rows[i]

    def texts(self, column: int, first: int = 0, last: int | None = None) -> list[str]:
        """What column ``column`` shows in rows ``first`` to ``last`` (inclusive)."""
        end = len(self._cells) if last is None else last + 1
        return [cells[column][0] for cells in self._cells[first:end]]

    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def _alignment(self, col: Column) -> QtCore.Qt.AlignmentFlag:
        h = QtCore.Qt.AlignmentFlag.AlignRight if col.align_right else QtCore.Qt.AlignmentFlag.AlignLeft
        return h | QtCore.Qt.AlignmentFlag.AlignVCenter

    def headerData(self, section: int, orientation, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if orientation != QtCore.Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return self.columns[section].title
        if role == QtCore.Qt.ItemDataRole.TextAlignmentRole:  # a title over its cells, not centred across two
            return self._alignment(self.columns[section])
        return None

    def data(self, index: QtCore.QModelIndex, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        col = self.columns[index.column()]
        text, colour = self._cells[index.row()][index.column()]
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return text
        if role == QtCore.Qt.ItemDataRole.TextAlignmentRole:
            return self._alignment(col)
        if role == QtCore.Qt.ItemDataRole.ForegroundRole and colour:
            return QtGui.QBrush(QtGui.QColor(colour))
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            return col.tooltip(self._rows[index.row()]) if col.tooltip is not None else None
        return None


class KeyedTableView(QtWidgets.QTableView):
    """A table whose selection belongs to a row's key: it follows its row when rows before it come and go (the
    model's inserts and removes), and when its row leaves, nothing is selected. Qt's own rule in single selection
    moves the selection to the next row, so "Cancel selected" (Delete) would cancel an order the trader never
    picked: after a replace (cancel + new) the highlight slid to the neighbour, then to a take-profit leg."""

    def rowsAboutToBeRemoved(self, parent: QtCore.QModelIndex, start: int, end: int) -> None:
        sel = self.selectionModel()
        if sel is not None and not parent.isValid():
            current = sel.currentIndex()
            leaving = (current.isValid() and start <= current.row() <= end) or any(
                start <= i.row() <= end for i in sel.selectedRows())
            if leaving:
                sel.clear()  # selection and current index: nothing slides onto a neighbour
        super().rowsAboutToBeRemoved(parent, start, end)


def table_view(model: DeclaredTableModel) -> QtWidgets.QTableView:
    """A table whose columns are as wide as their widest text (``fit_columns``), resizable by the trader; the last
    column takes the room left; an id column elides in the middle (its ends are what tell two ids apart); the
    selection stays with its row's key and clears when that row leaves (``KeyedTableView``)."""
    view = KeyedTableView()
    view.setModel(model)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(20)
    view.setShowGrid(False)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.setTextElideMode(QtCore.Qt.TextElideMode.ElideMiddle)
    view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    header = view.horizontalHeader()
    header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    header.setHighlightSections(False)
    header.setMinimumSectionSize(24)
    header.setDefaultSectionSize(48)  # the stretched last column may shrink to this before the table scrolls
    columns = getattr(model, "columns", ())
    hfm = QtGui.QFontMetrics(header.font())
    for n, col in enumerate(columns):
        view.setColumnHidden(n, not col.shown)
        header.resizeSection(n, hfm.horizontalAdvance(col.title) + HEADER_PAD)  # a stretched one: ignored
    _stretch(view)
    if columns:
        header.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(
            lambda pos: column_menu(view).exec(header.mapToGlobal(pos)))
    if isinstance(model, DeclaredTableModel):
        model.rowsInserted.connect(lambda _p, first, last: fit_columns(view, first, last))
        model.dataChanged.connect(lambda tl, br, _roles=(): fit_columns(view, tl.row(), br.row()))
    return view


def column_menu(view: QtWidgets.QTableView) -> QtWidgets.QMenu:
    """The header's context menu: every column, ticked when shown; a click shows or hides it (one stays)."""
    model: DeclaredTableModel = view.model()  # type: ignore[assignment]
    menu = QtWidgets.QMenu(view)
    for n, col in enumerate(model.columns):
        action = menu.addAction(col.title)
        action.setCheckable(True)
        action.setChecked(not view.isColumnHidden(n))

        def toggle(on: bool, n: int = n) -> None:
            shown = sum(not view.isColumnHidden(i) for i in range(len(model.columns)))
            if on or shown > 1:
                view.setColumnHidden(n, not on)
                _stretch(view)
                fit_columns(view, 0, model.rowCount() - 1)
        action.toggled.connect(toggle)
    return menu


def _shown(view: QtWidgets.QTableView) -> list[int]:
    return [n for n in range(len(getattr(view.model(), "columns", ()))) if not view.isColumnHidden(n)]


def _stretch(view: QtWidgets.QTableView) -> None:
    """The last column shown takes the room left when it is text (an id elides in the middle, a time or a note at
    its end); a number is never stretched, which could cut it: it is fitted to its text like the others."""
    shown = _shown(view)
    columns = getattr(view.model(), "columns", ())
    view.horizontalHeader().setStretchLastSection(bool(shown) and not columns[shown[-1]].align_right)


HEADER_PAD = 18  # the header's padding (6 px a side in the style sheet) and a little air
CELL_PAD = 14  # a cell's margins and a little air


def fit_columns(view: QtWidgets.QTableView, first: int, last: int) -> None:
    """Widen each column (never narrow: the trader may have widened it) to hold the texts of rows ``first`` to
    ``last``: a number is never elided. An id column stops at ``ID_CHARS`` digits and elides the rest in the middle
    (whole in its tooltip); the last column is stretched to the room left."""
    model: DeclaredTableModel = view.model()  # type: ignore[assignment]
    header = view.horizontalHeader()
    fm = view.fontMetrics()
    id_cap = fm.horizontalAdvance("0" * ID_CHARS) + CELL_PAD
    shown = _shown(view)
    if header.stretchLastSection():
        shown = shown[:-1]  # stretched to the room left
    for n in shown:
        col = model.columns[n]
        widest = max((fm.horizontalAdvance(t) for t in model.texts(n, first, last)), default=0) + CELL_PAD
        if col.is_id:
            widest = min(widest, id_cap)
        if widest > header.sectionSize(n):
            header.resizeSection(n, widest)


def _copy(text: str) -> None:
    QtWidgets.QApplication.clipboard().setText(text)


class Blotter(QtWidgets.QTabWidget):
    """Working orders, orders, fills, positions and the trade history; renders ``BlotterView`` snapshots.

    ``Blotter(desk)`` takes its snapshots from ``app.view.blotter.DeskBlotter`` (the desk and the journal's history)
    at each ``refresh``; ``Blotter()`` only renders what it is given (``render``)."""

    modify_requested = QtCore.Signal(str)  # an order id: the trader asks to modify this working order
    cancel_requested = QtCore.Signal(str)  # an order id: the trader asks to cancel this working order (menu, Delete)

    def __init__(self, desk=None, parent: QtWidgets.QWidget | None = None, *,
                 source: Callable[[], BlotterView] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("blotter")
        if source is None and desk is not None:
            source = DeskBlotter.start(desk).snapshot
        self._source = source
        self.view: BlotterView | None = None
        self.working = DeclaredTableModel(working_columns())
        self.orders = DeclaredTableModel(history_order_columns())
        self.fills = DeclaredTableModel(fill_row_columns())
        self.positions = DeclaredTableModel(position_row_columns())
        self.closed = DeclaredTableModel(closed_columns())
        self.days = DeclaredTableModel(pnl_columns("UTC day"))
        self.symbols = DeclaredTableModel(pnl_columns("Symbol"))
        self.working_view = table_view(self.working)
        self.orders_view = table_view(self.orders)
        self.fills_view = table_view(self.fills)
        self.positions_view = table_view(self.positions)
        self.closed_view = table_view(self.closed)
        self.days_view = table_view(self.days)
        self.symbols_view = table_view(self.symbols)
        self.history_line = QtWidgets.QLabel("no trade history")
        self.history_line.setObjectName("historyLine")
        self.history_line.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.history_line.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                        QtWidgets.QSizePolicy.Policy.Preferred)
        history = QtWidgets.QWidget()
        box = QtWidgets.QVBoxLayout(history)
        box.setContentsMargins(0, 2, 0, 0)
        box.setSpacing(2)
        box.addWidget(self.history_line)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        split.addWidget(self.closed_view)
        totals = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        totals.addWidget(self.days_view)
        totals.addWidget(self.symbols_view)
        split.addWidget(totals)
        split.setStretchFactor(0, 1)  # the closed positions take what the window gives; the totals keep theirs
        split.setStretchFactor(1, 0)
        split.setSizes([440, 180])
        box.addWidget(split, 1)
        self.history = history
        self.addTab(self.working_view, "Working")
        self.addTab(self.orders_view, "Orders")
        self.addTab(self.fills_view, "Fills")
        self.addTab(self.positions_view, "Positions")
        self.addTab(history, "History")
        self.setTabToolTip(4, "Closed positions with their realised PnL, and realised PnL per UTC day and per symbol, "
                              "from the journal: kept across restarts")
        for view in (self.working_view, self.orders_view, self.fills_view, self.positions_view, self.closed_view):
            view.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
            view.customContextMenuRequested.connect(lambda pos, v=view: self._menu(v, pos))
            view.installEventFilter(self)  # Ctrl+C: the table itself would copy the clicked cell only
        self.working_view.doubleClicked.connect(self._double_clicked)

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if (event.type() == QtCore.QEvent.Type.KeyPress and isinstance(obj, QtWidgets.QTableView)
                and event.matches(QtGui.QKeySequence.StandardKey.Copy)):  # type: ignore[attr-defined]
            self._copy_selected(obj)
            return True
        if (obj is self.working_view and event.type() == QtCore.QEvent.Type.KeyPress
                and event.key() == QtCore.Qt.Key.Key_Delete):  # type: ignore[attr-defined]
            oid = self.selected_working_order_id()
            if oid is not None:
                self.cancel_requested.emit(oid)
            return oid is not None
        return super().eventFilter(obj, event)

    # ----- rendering ------------------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        if self._source is not None:
            self.render(self._source())

    def render(self, view: BlotterView) -> None:
        """Show ``view``: rows keyed, updated in place (the selection stays on its row)."""
        if view is self.view:
            return
        last = self.view
        self.view = view
        for model, rows in ((self.working, view.working), (self.orders, view.orders), (self.fills, view.fills),
                            (self.positions, view.positions), (self.closed, view.closed), (self.days, view.days),
                            (self.symbols, view.symbols)):
            model.set_rows(rows)
        if last is None or last.history_line != view.history_line:
            self.history_line.setText(view.history_line)
            self.history_line.setToolTip(view.history_line)
        if last is None or last.history_loading != view.history_loading:
            i = self.indexOf(self.history)
            self.setTabText(i, "History (loading…)" if view.history_loading else "History")

    # ----- what the trader asks ---------------------------------------------------------------------------------
    def selected_working_order(self) -> OrderRow | None:
        """The working order selected (its ``id`` is the order id), or None."""
        rows = self.working_view.selectionModel().selectedRows()
        return self.working.row(rows[0].row()) if rows else None

    def selected_working_order_id(self) -> str | None:
        row = self.selected_working_order()
        return None if row is None else row.order_id

    def _double_clicked(self, index: QtCore.QModelIndex) -> None:
        if index.isValid():
            self.modify_requested.emit(self.working.row(index.row()).order_id)

    def _row_at(self, view: QtWidgets.QTableView, pos: QtCore.QPoint) -> Any:
        index = view.indexAt(pos)
        if not index.isValid():
            return None
        view.selectRow(index.row())
        return view.model().row(index.row())  # type: ignore[attr-defined]

    def menu_for(self, view: QtWidgets.QTableView, row: Any) -> QtWidgets.QMenu:
        """The context menu of ``row`` (shown by a right click; built apart so a test can read it)."""
        menu = QtWidgets.QMenu(self)
        if isinstance(row, OrderRow) and row.working:
            menu.addAction("Modify…").triggered.connect(lambda: self.modify_requested.emit(row.order_id))
            menu.addAction("Cancel order").triggered.connect(lambda: self.cancel_requested.emit(row.order_id))
            menu.addSeparator()
        if isinstance(row, (OrderRow, FillRow)):
            menu.addAction(f"Copy order id {row.order_id}").triggered.connect(lambda: _copy(row.order_id))
        if isinstance(row, FillRow):
            menu.addAction("Copy fill id").triggered.connect(lambda: _copy(row.fill_id))
        if isinstance(row, (PositionRow, ClosedRow, PnlRow, OrderRow, FillRow)):
            menu.addAction("Copy row").triggered.connect(lambda: _copy(self._row_text(view, row)))
        return menu

    def _menu(self, view: QtWidgets.QTableView, pos: QtCore.QPoint) -> None:
        row = self._row_at(view, pos)
        if row is not None:
            self.menu_for(view, row).exec(view.viewport().mapToGlobal(pos))

    def _row_text(self, view: QtWidgets.QTableView, row: Any) -> str:
        model: DeclaredTableModel = view.model()  # type: ignore[assignment]
        return "\t".join(str(c.value(row)) for c in model.columns)

    def _copy_selected(self, view: QtWidgets.QTableView) -> None:
        """Ctrl+C: an order's or a fill's order id (what a trader pastes into a support ticket), else the row."""
        rows = view.selectionModel().selectedRows()
        if not rows:
            return
        row = view.model().row(rows[0].row())  # type: ignore[attr-defined]
        _copy(row.order_id if isinstance(row, (OrderRow, FillRow)) else self._row_text(view, row))
