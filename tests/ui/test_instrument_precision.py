"""Every number on screen in its instrument's precision: XRP at 0.6012 is never shown as 0.60 (blotter tables,
decision cards, the chart's last-price tag, read-out and position lines)."""

from __future__ import annotations

from decimal import Decimal as D

from app.llm.providers import OfflineProvider
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.llm.service import DecisionService
from app.market.instruments import Instrument, Instruments
from app.market.state import MarketData
from app.models import Fill, Liquidity, Order, OrderRequest, OrderStatus, OrderType, Position, Side
from app.trading.proposals import ProposalBook
from app.ui.blotter import DeclaredTableModel, _id, _symbol, fill_columns, order_columns, position_columns
from app.ui.chart.chart_widget import ChartWidget
from app.ui.decisions import PendingCard
from app.view.decisions import decision_board

XRP = Instrument.from_steps("XRPUSDT", D("0.0001"), D("0.1"), min_notional=D("5"))


def cell(model: DeclaredTableModel, row: int, title: str) -> str:
    titles = [c.title for c in model.columns]
    return model.data(model.index(row, titles.index(title)))


def test_blotter_tables_show_xrp_prices_and_quantities_in_its_precision(qtbot):
    inst = {"XRPUSDT": XRP}.get
    req = OrderRequest("XRPUSDT", Side.BUY, OrderType.LIMIT, D("100"), limit_price=D("0.6011"))
    orders = DeclaredTableModel(order_columns(inst), key=_id)
    orders.set_rows([Order("O1", req, OrderStatus.FILLED, 0, filled_qty=D("100"), avg_price=D("0.6011"))])
    assert (cell(orders, 0, "Price"), cell(orders, 0, "Qty"), cell(orders, 0, "Avg")) == ("0.6011", "100.0", "0.6011")
    fills = DeclaredTableModel(fill_columns(inst), key=_id)
    fills.set_rows([Fill("F1", "O1", "XRPUSDT", Side.BUY, D("100"), D("0.6011"), D("0.06"), Liquidity.TAKER, 0)])
    assert cell(fills, 0, "Price") == "0.6011"
    positions = DeclaredTableModel(position_columns(lambda s: D("0.1"), lambda s: D("0.6012"), inst), key=_symbol)
    positions.set_rows([Position("XRPUSDT", D("100"), D("0.6011"))])
    assert (cell(positions, 0, "Avg price"), cell(positions, 0, "Mark")) == ("0.6011", "0.6012")
    # a symbol whose filters are unknown: about five significant digits from the price, never two decimals
    unknown = DeclaredTableModel(order_columns(), key=_id)
    unknown.set_rows([Order("O2", OrderRequest("DOGEUSDT", Side.SELL, OrderType.LIMIT, D("10"),
                                               limit_price=D("0.12345")), OrderStatus.NEW, 0)])
    assert cell(unknown, 0, "Price") == "0.12345"


def test_pending_card_shows_price_limit_and_value_in_the_symbols_precision(qtbot):
    body = DecisionBody(action=Action.BUY, size_pct=5, limit_price=0.6012, confidence=0.8, rationale="t")
    meta = DecisionMeta(provider="p", model="m", prompt_version="v", latency_ms=1.0, cache_status=CacheStatus.MISS)
    book = ProposalBook(instruments=Instruments(loaded={"XRPUSDT": XRP}))
    p = book.add(Decision(symbol="XRPUSDT", timeframe="1m", state_ms=0, body=body, meta=meta), None)
    svc = DecisionService(OfflineProvider(), MarketData(["XRPUSDT"]), timeframe="1m")
    board = decision_board(svc, book, book.instruments, book.clock(), order_of=lambda q: book.implied_edits(
        q, equity=D("10000"), price=D("0.6011"), position_qty=D(0)), price_of=lambda s: D("0.6011"))
    card = PendingCard(p)
    qtbot.addWidget(card)
    card.show_row(board.pending[0], target=False)
    assert "limit 0.6012" in card.order_label.text(), card.order_label.text()
    assert card.numbers.text() == "price —   value 499.96 USDT"  # 831.6 XRP (its 0.1 lot) at the 0.6012 limit


def test_chart_prices_follow_the_instrument(qtbot):
    chart = ChartWidget(timeframe="1m")
    qtbot.addWidget(chart)
    chart.last_line.set_price(0.6012, up=True)
    chart.set_instrument(XRP)
    assert chart.last_line.text == "0.6012"  # rewritten at once, not at the next trade
    assert chart.fmt_price(0.60123) == "0.6012"
    chart.show_position(Position("XRPUSDT", qty=D("100"), avg_price=D("0.6012")), (D("0.59"), None), [], D("0.6"))
    assert chart.position_lines["entry"].text == "LONG 100.0 @ 0.6012 · -0.12 USDT"
    assert chart.position_lines["sl"].text == "SL 0.5900 · -1.86 %"
