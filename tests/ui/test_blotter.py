"""The blotter's tables keep their rows (and the trader's selection) across refreshes: keyed, updated in place."""

from __future__ import annotations

from decimal import Decimal

from PySide6 import QtCore

from app.models import Order, OrderRequest, OrderStatus, OrderType, Side
from app.ui.blotter import ORDER_COLUMNS, DeclaredTableModel, _id, table_view


def order(oid: str, price: str = "60000", status: OrderStatus = OrderStatus.NEW) -> Order:
    req = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.01"), limit_price=Decimal(price))
    return Order(oid, req, status, created_ms=1_700_000_000_000)


def ids(model: DeclaredTableModel) -> list[str]:
    return [model.row(i).id for i in range(model.rowCount())]


def selected_id(view) -> str | None:
    rows = view.selectionModel().selectedRows()
    return view.model().row(rows[0].row()).id if rows else None


class Signals:
    def __init__(self, model: QtCore.QAbstractItemModel) -> None:
        self.resets = self.inserted = self.removed = 0
        self.changed: list[int] = []
        model.modelReset.connect(lambda: setattr(self, "resets", self.resets + 1))
        model.rowsInserted.connect(lambda _p, a, b: setattr(self, "inserted", self.inserted + b - a + 1))
        model.rowsRemoved.connect(lambda _p, a, b: setattr(self, "removed", self.removed + b - a + 1))
        model.dataChanged.connect(lambda tl, _br, _roles=(): self.changed.append(tl.row()))


def test_a_selected_order_stays_selected_when_a_row_changes_and_one_is_added(qtbot):
    model = DeclaredTableModel(ORDER_COLUMNS, key=_id)
    view = table_view(model)
    qtbot.addWidget(view)
    a, b, c = order("A"), order("B", "61000"), order("C", "62000")
    model.set_rows([c, b, a])  # newest first, as the blotter shows them
    view.show()
    view.selectRow(1)
    assert selected_id(view) == "B"
    signals = Signals(model)

    b.status, b.filled_qty = OrderStatus.PARTIALLY_FILLED, Decimal("0.004")  # the same object, updated in place
    d = order("D", "63000")
    model.set_rows([d, c, b, a])

    assert ids(model) == ["D", "C", "B", "A"]
    assert selected_id(view) == "B", "the trader's selection followed its order"
    assert signals.resets == 0 and signals.inserted == 1 and signals.removed == 0
    assert signals.changed == [2], "only the changed row is redrawn"
    assert model.data(model.index(2, [c.title for c in ORDER_COLUMNS].index("Status"))) == "PARTIALLY_FILLED"


def test_rows_that_leave_are_removed_and_the_selection_stays_on_its_row(qtbot):
    model = DeclaredTableModel(ORDER_COLUMNS, key=_id)
    view = table_view(model)
    qtbot.addWidget(view)
    rows = [order(x) for x in "EDCBA"]
    model.set_rows(rows)
    view.show()
    view.selectRow(2)  # C
    signals = Signals(model)
    model.set_rows([rows[0], rows[2], rows[4]])  # D and B were filled or cancelled and left the working list
    assert ids(model) == ["E", "C", "A"] and selected_id(view) == "C"
    assert signals.resets == 0 and signals.removed == 2 and signals.changed == []
    model.set_rows([rows[4], rows[2], rows[0]])  # a re-sort moves rows; the selection follows
    assert ids(model) == ["A", "C", "E"] and selected_id(view) == "C"
    model.set_rows([rows[4], rows[4], rows[0]])  # a key twice is one row
    assert ids(model) == ["A", "E"]


def test_a_fee_taken_in_a_coin_keeps_its_digits_and_names_its_asset():
    # A live buy on Binance pays its commission in the base coin: 0.00001 BTC must not read "0.0000".
    from app.models import Fill, Liquidity
    from app.ui.blotter import FILL_COLUMNS

    fee = next(c for c in FILL_COLUMNS if c.title == "Fee")
    coin = Fill("F1", "O1", "BTCUSDT", Side.BUY, Decimal("0.01"), Decimal("60000"), Decimal("0.00001"),
                Liquidity.TAKER, 1_700_000_000_000, fee_asset="BTC")
    quote = Fill("F2", "O1", "BTCUSDT", Side.SELL, Decimal("0.01"), Decimal("60000"), Decimal("0.6"),
                 Liquidity.TAKER, 1_700_000_000_000)
    assert fee.value(coin) == "0.00001 BTC"
    assert fee.value(quote) == "0.6000"


def test_orders_and_fills_name_their_symbol():
    # The tables hold every symbol's orders and fills: without a Symbol column a BTC order and an ETH order with the
    # same side and size read the same.
    from app.models import Fill, Liquidity
    from app.ui.blotter import FILL_COLUMNS

    eth = Order("E1", OrderRequest("ETHUSDT", Side.SELL, OrderType.MARKET, Decimal("0.5")), OrderStatus.FILLED, 1)
    symbol = next(c for c in ORDER_COLUMNS if c.title == "Symbol")
    assert symbol.value(eth) == "ETHUSDT" and symbol.value(order("B1")) == "BTCUSDT"
    fill = Fill("F1", "E1", "ETHUSDT", Side.SELL, Decimal("0.5"), Decimal("3000"), Decimal("1.5"), Liquidity.TAKER, 1)
    assert next(c for c in FILL_COLUMNS if c.title == "Symbol").value(fill) == "ETHUSDT"
