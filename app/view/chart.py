"""The chart's read model: the working orders it draws as lines (Qt-free, built by ``ViewModel.chart_orders``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from app.market.instruments import Instrument
from app.models import Order, OrderOrigin, OrderType


@dataclass(frozen=True, slots=True)
class ChartOrder:
    """A working order as the chart draws it. ``qty_text`` in the instrument's precision; ``label`` optional
    (default "BUY LMT 0.500 @ 60,100.0")."""

    order_id: str
    symbol: str
    side: str  # "BUY" | "SELL"
    type: str  # "LIMIT" | "STOP_MARKET" | ...
    price: Decimal
    qty_text: str
    label: str = ""

    @property
    def movable(self) -> bool:
        return self.type != "MARKET"


def chart_orders(orders: Iterable[Order], instrument: Instrument) -> list[ChartOrder]:
    """The chart rows of working orders: limits at their limit price, stops at their stop price, the quantity still
    to fill. Bracket legs are left out (the position's SL / TP lines show them), and so are market orders."""
    rows = []
    for o in orders:
        r = o.request
        if r.origin is OrderOrigin.BRACKET or r.type is OrderType.MARKET:
            continue
        price = r.limit_price if r.type is OrderType.LIMIT else r.stop_price
        if price is None:
            continue
        rows.append(ChartOrder(o.id, r.symbol, r.side.value, r.type.value, price, instrument.fmt_qty(o.remaining)))
    return rows
