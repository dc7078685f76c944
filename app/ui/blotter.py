"""Orders, fills and positions as table models with declared columns (as vnpy's monitors do): one column table per
view instead of a class of hand-written code per table. Rows are pulled from the desk on the UI timer.

Rows are keyed (order id, fill id, symbol; vnpy's ``data_key``) and updated in place: a refresh inserts new rows,
removes gone ones and signals ``dataChanged`` for rows whose cells changed. Never a model reset, which would drop the
trader's selection (and the working order the ticket is about to cancel) four times a second."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.market.instruments import Instrument, defaults_for
from app.models import Fill, Order, Position, Side
from app.ui import theme


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    value: Callable[[Any], Any]
    align_right: bool = True
    colour: Callable[[Any], str | None] | None = None


def _time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S") if ms else ""


def _fee(f: Fill) -> str:
    """In the quote currency to 4 places as before; a fee the exchange took in a coin (a live buy pays in the base,
    or BNB) keeps every digit and names its asset: 0.00001 BTC must not read 0.0000."""
    if f.fee_asset is None:
        return _num(f.fee, 4)
    return f"{_num(f.fee)} {f.fee_asset}"


def _num(v: Decimal | None, places: int | None = None) -> str:
    if v is None:
        return ""
    if places is not None:
        return f"{v:,.{places}f}"
    return f"{v.normalize():f}"


def _no_instrument(symbol: str) -> Instrument | None:
    return None


def _price(instrument_of: Callable[[str], Instrument | None], symbol: str, v: Decimal | None) -> str:
    """A price in its symbol's precision (XRP's 0.6012, BTC's 61,400.00); unknown filters: five significant
    digits from the price itself."""
    if v is None:
        return ""
    return (instrument_of(symbol) or defaults_for(symbol, v)).fmt_price(v)


def _qty(instrument_of: Callable[[str], Instrument | None], symbol: str, v: Decimal | None) -> str:
    inst = instrument_of(symbol)
    return _num(v) if inst is None or v is None else inst.fmt_qty(v)


def _side_colour(side: Side) -> str:
    t = theme.current()
    return t.up if side is Side.BUY else t.down


def _pnl_colour(v: Decimal) -> str | None:
    t = theme.current()
    return t.up if v > 0 else t.down if v < 0 else None


def order_columns(inst: Callable[[str], Instrument | None] = _no_instrument) -> tuple[Column, ...]:
    return (
        Column("Time", lambda o: _time(o.created_ms), align_right=False),
        Column("Symbol", lambda o: o.symbol, align_right=False),  # orders of every symbol share the table
        Column("Id", lambda o: o.id, align_right=False),
        Column("Origin", lambda o: o.request.origin.value, align_right=False),
        Column("Side", lambda o: o.request.side.value, align_right=False,
               colour=lambda o: _side_colour(o.request.side)),
        Column("Type", lambda o: o.request.type.value, align_right=False),
        Column("Qty", lambda o: _qty(inst, o.symbol, o.request.qty)),
        Column("Price", lambda o: _price(inst, o.symbol, o.request.limit_price or o.request.stop_price)),
        Column("Filled", lambda o: _qty(inst, o.symbol, o.filled_qty)),
        Column("Avg", lambda o: _price(inst, o.symbol, o.avg_price)),
        Column("Status", lambda o: o.status.value, align_right=False),
        Column("Note", lambda o: o.reject_reason or "", align_right=False),
    )


def fill_columns(inst: Callable[[str], Instrument | None] = _no_instrument) -> tuple[Column, ...]:
    return (
        Column("Time", lambda f: _time(f.exchange_ms), align_right=False),
        Column("Symbol", lambda f: f.symbol, align_right=False),
        Column("Order", lambda f: f.order_id, align_right=False),
        Column("Side", lambda f: f.side.value, align_right=False, colour=lambda f: _side_colour(f.side)),
        Column("Qty", lambda f: _qty(inst, f.symbol, f.qty)),
        Column("Price", lambda f: _price(inst, f.symbol, f.price)),
        Column("Fee", _fee),
        Column("Liq.", lambda f: f.liquidity.value, align_right=False),
    )


ORDER_COLUMNS = order_columns()  # without instruments: precision from each price
FILL_COLUMNS = fill_columns()


def position_columns(unrealized: Callable[[str], Decimal], mark: Callable[[str], Decimal | None],
                     inst: Callable[[str], Instrument | None] = _no_instrument) -> tuple[Column, ...]:
    return (
        Column("Symbol", lambda p: p.symbol, align_right=False),
        Column("Qty", lambda p: _qty(inst, p.symbol, p.qty), colour=lambda p: _pnl_colour(p.qty)),
        Column("Avg price", lambda p: _price(inst, p.symbol, p.avg_price)),
        Column("Mark", lambda p: _price(inst, p.symbol, mark(p.symbol))),
        Column("Unrealised", lambda p: _num(unrealized(p.symbol), 2),
               colour=lambda p: _pnl_colour(unrealized(p.symbol))),
        Column("Realised", lambda p: _num(p.realized_pnl, 2), colour=lambda p: _pnl_colour(p.realized_pnl)),
        Column("Fees", lambda p: _num(p.fees, 4)),
    )


def _id(row: Order | Fill) -> str:
    return row.id


def _symbol(row: Position) -> str:
    return row.symbol


class DeclaredTableModel(QtCore.QAbstractTableModel):
    def __init__(self, columns: Sequence[Column], key: Callable[[Any], Hashable] = id,
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.columns = tuple(columns)
        self.key = key
        self._rows: list[Any] = []
        self._keys: list[Hashable] = []
        # What each row's cells showed last: text and colour per column. Rows are often the same object mutated in
        # place (an order filling), so "changed" is judged by what the trader would see, not by identity.
        self._cells: list[tuple[tuple[str, str | None], ...]] = []

    def _render(self, item: Any) -> tuple[tuple[str, str | None], ...]:
        return tuple((str(c.value(item)), c.colour(item) if c.colour is not None else None) for c in self.columns)

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

    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if role == QtCore.Qt.ItemDataRole.DisplayRole and orientation == QtCore.Qt.Orientation.Horizontal:
            return self.columns[section].title
        return None

    def data(self, index: QtCore.QModelIndex, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        col = self.columns[index.column()]
        text, colour = self._cells[index.row()][index.column()]
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return text
        if role == QtCore.Qt.ItemDataRole.TextAlignmentRole:
            h = QtCore.Qt.AlignmentFlag.AlignRight if col.align_right else QtCore.Qt.AlignmentFlag.AlignLeft
            return h | QtCore.Qt.AlignmentFlag.AlignVCenter
        if role == QtCore.Qt.ItemDataRole.ForegroundRole and colour:
            return QtGui.QBrush(QtGui.QColor(colour))
        return None


def table_view(model: QtCore.QAbstractTableModel) -> QtWidgets.QTableView:
    view = QtWidgets.QTableView()
    view.setModel(model)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(20)
    view.setShowGrid(False)
    view.setAlternatingRowColors(True)
    view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    view.horizontalHeader().setStretchLastSection(True)
    return view


class Blotter(QtWidgets.QTabWidget):
    """Positions, working orders, all orders and fills; refreshed when the desk's version moves."""

    def __init__(self, desk, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self._version = -1
        pf = desk.portfolio
        inst = desk.instruments.get  # every price and quantity in its symbol's precision
        self.positions = DeclaredTableModel(position_columns(pf.unrealized_pnl, desk.last_price, inst), key=_symbol)
        self.working = DeclaredTableModel(order_columns(inst), key=_id)
        self.orders = DeclaredTableModel(order_columns(inst), key=_id)
        self.fills = DeclaredTableModel(fill_columns(inst), key=_id)
        self.positions_view = table_view(self.positions)
        self.working_view = table_view(self.working)
        self.addTab(self.positions_view, "Positions")
        self.addTab(self.working_view, "Working orders")
        self.addTab(table_view(self.orders), "Orders")
        self.addTab(table_view(self.fills), "Fills")

    def selected_working_order(self) -> Order | None:
        rows = self.working_view.selectionModel().selectedRows()
        return self.working.row(rows[0].row()) if rows else None

    def refresh(self, force: bool = False) -> None:
        d = self.desk
        if d.version == self._version and not force:
            # Marks move unrealised PnL even when nothing else changed.
            self.positions.set_rows(self._open_positions())
            return
        self._version = d.version
        self.positions.set_rows(self._open_positions())
        self.working.set_rows(list(reversed(d.broker.open_orders())))
        self.orders.set_rows(list(reversed(d.broker.orders[-300:])))
        self.fills.set_rows(list(reversed(d.fills[-300:])))

    def _open_positions(self) -> list[Position]:
        return [p for s in self.desk.books if (p := self.desk.portfolio.position(s)).qty != 0]
