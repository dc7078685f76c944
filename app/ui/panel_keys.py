"""The keys and mouse gestures the panels answer to themselves (not the window's configurable hotkeys): one table,
listed by Help > Keyboard shortcuts under "Mouse and panel keys", and read by the panels that bind a key from it
(the watchlist's Enter). tests/ui/test_help_panel_keys.py drives every row on the real panel, so a row whose key a
panel stopped answering to fails there."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtCore

Key = QtCore.Qt.Key


@dataclass(frozen=True, slots=True)
class PanelKey:
    name: str  # stable: the test that proves the panel answers to it is keyed by it
    key: str  # as the trader reads it: "Delete", "Double-click", "Drag the SL / TP line"
    where: str  # the panel (and tab) it acts in
    does: str
    qt_keys: tuple[Key, ...] = ()  # the keys the panel binds, for the panels that read them from here


WATCHLIST_CHOOSE = PanelKey("watchlist_choose", "Enter or click", "Watchlist",
                            "Show that symbol (chart, ticket, order book, trades)", (Key.Key_Return, Key.Key_Enter))
BOOK_CLICK = PanelKey("book_click", "Click a level", "Order book", "Put the level's price in the ticket")
ORDERS_MODIFY = PanelKey("orders_modify", "Double-click", "Orders › Working",
                         "Modify / replace the working order (loads it into the ticket)")
ORDERS_CANCEL = PanelKey("orders_cancel", "Delete", "Orders › Working", "Cancel the selected working order",
                         (Key.Key_Delete,))
ORDERS_COPY = PanelKey("orders_copy", "Ctrl+C", "Orders (Working, Orders, Fills)",
                       "Copy the selected row's order id (other tables: the row)", (Key.Key_C,))
CHART_DRAG_ORDER = PanelKey("chart_drag_order", "Drag an order's line", "Chart",
                            "Move a working limit or stop order (replaced, through the same risk checks)")
CHART_DRAG_BRACKET = PanelKey("chart_drag_bracket", "Drag the SL / TP line", "Chart",
                              "Move the position's stop-loss or take-profit")
CHART_PAN = PanelKey("chart_pan", "Drag on the candles", "Chart",
                     "Pan into history (the live edge stops following; End brings it back)")

PANEL_KEYS: tuple[PanelKey, ...] = (
    WATCHLIST_CHOOSE, BOOK_CLICK, ORDERS_MODIFY, ORDERS_CANCEL, ORDERS_COPY, CHART_DRAG_ORDER, CHART_DRAG_BRACKET,
    CHART_PAN,
)
