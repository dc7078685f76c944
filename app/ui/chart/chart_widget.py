"""The chart: price pane with candles over a volume pane, linked x axes, a timeframe selector, auto-follow of the
live edge and a crosshair read-out. ``refresh`` is called by the UI timer and redraws only what changed."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.market.candles import TIMEFRAMES, CandleSeries
from app.market.instruments import Instrument, split_symbol
from app.ui import theme
from app.ui.chart.axes import PriceAxis, TimeAxis
from app.ui.chart.items import (
    CandlestickItem,
    LastPriceLine,
    LiveCandleItem,
    VolumeItem,
    price_decimals,
    set_y_range,
)
from app.ui.chart.levels import TYPE_WORDS, AxisPriceTag, LabelLayer, LevelLine
from app.ui.chart.overlays import IndicatorOverlays
from app.view.chart import ChartOrder

# Proposal arrows take their cache badge's colour (as in the decision cards).
OVERLAY_LIVE_HZ = 4.0  # how often EMA/VWAP/bands/oscillator follow the forming bar (closed bars: at once)
BADGE_COLOURS = {"HIT": "#3fb950", "SIMILAR": "#58a6ff", "MISS": "#d29922", "OFFLINE": "#7d8590"}


def _marker_tip(x: float, y: float, data) -> str:
    """A fill's or a proposal's marker, hovered: what it is, in words."""
    return str(data) if data is not None else ""


class ChartWidget(QtWidgets.QWidget):
    timeframe_changed = QtCore.Signal(str)
    symbol_changed = QtCore.Signal(str)
    # The trader dragged a working order's line / the position's stop-loss or take-profit line and let go: the new
    # price on the instrument's tick (Decimal). Wired to desk.replace_order / desk.move_bracket; the chart shows the
    # dropped price while the desk answers and whatever the next update says after (a refused move goes back).
    order_moved = QtCore.Signal(str, object)  # order id, price
    bracket_moved = QtCore.Signal(str, str, object)  # symbol, "SL" | "TP", price

    DEFAULT_VISIBLE_BARS = 150

    def __init__(self, timeframe: str = "1m", symbols: list[str] | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.symbols = list(symbols or [])
        self.setObjectName("chart")
        self.timeframe = timeframe
        self.follow = True
        self._series: CandleSeries | None = None
        self._closed_key: tuple = ()
        self._live_version = -1
        self._overlays_at = 0.0  # monotonic time of the last overlay update
        self._x = np.empty(0)
        self._last_xrange: tuple[float, float] = (0.0, 0.0)
        self._applying_range = False
        self._view_ready = False  # the first data for a series sets the default zoom
        self.instrument: Instrument | None = None  # the symbol's precision; None: about five significant digits
        self._build_toolbar()
        self._build_plots()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._toolbar)
        layout.addWidget(self.glw, 1)

    # ----- construction -------------------------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        bar = QtWidgets.QWidget(self)
        bar.setObjectName("chartToolbar")
        row = QtWidgets.QHBoxLayout(bar)
        row.setContentsMargins(8, 3, 8, 3)
        row.setSpacing(6)
        self.symbol_label = QtWidgets.QLabel("—", bar)
        self.symbol_label.setObjectName("chartSymbol")
        row.addWidget(self.symbol_label)
        self.symbol_choice = QtWidgets.QComboBox(bar)
        self.symbol_choice.setObjectName("symbolChoice")
        self.symbol_choice.addItems(self.symbols)
        self.symbol_choice.setToolTip("Symbol on the chart, the ticket and the decisions panel")
        self.symbol_choice.setVisible(len(self.symbols) > 1)
        self.symbol_label.setVisible(len(self.symbols) <= 1)
        self.symbol_choice.currentTextChanged.connect(self.symbol_changed)
        row.addWidget(self.symbol_choice)
        self._tf_buttons: dict[str, QtWidgets.QToolButton] = {}
        group = QtWidgets.QButtonGroup(bar)
        group.setExclusive(True)
        for tf in TIMEFRAMES:
            b = QtWidgets.QToolButton(bar)
            b.setText(tf)
            b.setCheckable(True)
            b.setChecked(tf == self.timeframe)
            b.setToolTip(f"Show {tf} candles")
            b.clicked.connect(lambda _=False, tf=tf: self.set_timeframe(tf))
            group.addButton(b)
            row.addWidget(b)
            self._tf_buttons[tf] = b
        row.addSpacing(10)
        self._overlay_buttons = {}
        for key, label, tip in (("ema", "EMA", "EMA 20 and 50"), ("vwap", "VWAP", "Session VWAP (UTC day)"),
                                ("bollinger", "BB", "Bollinger bands 20, 2σ")):
            b = QtWidgets.QToolButton(bar)
            b.setText(label)
            b.setCheckable(True)
            b.setToolTip(tip)
            b.toggled.connect(lambda on, key=key: self.set_overlay(key, on))
            row.addWidget(b)
            self._overlay_buttons[key] = b
        self.osc_choice = QtWidgets.QComboBox(bar)
        self.osc_choice.addItems(["RSI", "MACD", "OFF"])
        self.osc_choice.setToolTip("Oscillator pane")
        self.osc_choice.currentTextChanged.connect(self.set_oscillator)
        row.addWidget(self.osc_choice)
        self.readout = QtWidgets.QLabel("", bar)
        self.readout.setObjectName("chartReadout")
        self.readout.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        # The read-out takes the room there is and never asks for more: as a plain label its one line of OHLCV set
        # the window's minimum width on hover (1440 -> 2112 px), pushing the right-hand docks off a 1280 px screen.
        self.readout.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.readout_full = ""  # the whole read-out; the label shows it elided at its width
        self.readout.installEventFilter(self)
        row.addSpacing(12)
        row.addWidget(self.readout, 1)
        self.follow_button = QtWidgets.QToolButton(bar)
        self.follow_button.setText("Live ⇥")
        self.follow_button.setCheckable(True)
        self.follow_button.setChecked(True)
        self.follow_button.setToolTip("Follow the live edge (End)")
        self.follow_button.clicked.connect(self.set_follow)
        row.addWidget(self.follow_button)
        QtGui.QShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_End), self, activated=lambda: self.set_follow(True))
        self._toolbar = bar

    def _build_plots(self) -> None:
        t = theme.current()
        pg.setConfigOptions(antialias=False)
        self.glw = pg.GraphicsLayoutWidget(self)
        self.glw.setBackground(t.background)
        self.glw.ci.layout.setSpacing(0)
        self.glw.ci.setContentsMargins(0, 0, 0, 0)
        # enableMenu=False: pyqtgraph's context menu (log axes, transforms) only breaks a candle chart, and not
        # building it saves ~4 ms per plot at start-up.
        # PriceAxis / TimeAxis: pyqtgraph's axes, the same pixels, their grid lines filled ~10x faster.
        self.price_plot = self.glw.addPlot(row=0, col=0, enableMenu=False, axisItems={"right": PriceAxis("right")})
        self.volume_plot = self.glw.addPlot(row=1, col=0, enableMenu=False, axisItems={"right": PriceAxis("right")})
        self.osc_plot = self.glw.addPlot(row=2, col=0, enableMenu=False,
                                         axisItems={"right": PriceAxis("right"), "bottom": TimeAxis("bottom")})
        self.glw.ci.layout.setRowStretchFactor(0, 6)
        self.glw.ci.layout.setRowStretchFactor(1, 1)
        self.glw.ci.layout.setRowStretchFactor(2, 2)
        for plot in (self.price_plot, self.volume_plot, self.osc_plot):
            plot.hideAxis("left")
            plot.showAxis("right")
            plot.showGrid(x=True, y=True, alpha=0.12)
            plot.hideButtons()
            plot.getAxis("right").setWidth(72)
            for name in ("right", "bottom"):
                ax = plot.getAxis(name)
                ax.setPen(pg.mkPen(t.grid))
                ax.setTextPen(pg.mkPen(t.muted))
                # Axes repaint whenever a neighbouring item does; replaying their tick labels costs ~3 ms each.
                # A pixmap cache makes that a blit until the axis itself changes.
                ax.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
            plot.vb.setMouseEnabled(x=True, y=False)
        self.price_plot.hideAxis("bottom")
        self.volume_plot.hideAxis("bottom")
        self.volume_plot.setXLink(self.price_plot)
        self.osc_plot.setXLink(self.price_plot)
        self.volume_plot.getAxis("right").setStyle(showValues=False)
        self.candles = CandlestickItem()
        self.live_candle = LiveCandleItem()
        self.volume = VolumeItem()
        self.live_volume = LiveCandleItem(volume=True)
        self.price_plot.addItem(self.candles)
        self.price_plot.addItem(self.live_candle)
        self.volume_plot.addItem(self.volume)
        self.volume_plot.addItem(self.live_volume)
        self.last_line = LastPriceLine(t)
        self.last_line.setZValue(7)
        self.price_plot.addItem(self.last_line, ignoreBounds=True)
        # The last price's tag on the price axis: inside the plot it covered the newest candles.
        self.last_line.tag = AxisPriceTag(self.price_plot.getAxis("right"), self.price_plot.vb)
        self.last_line.set_colors(t)
        self._axis_width = 72
        self.cross_v = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(t.grid))
        self.cross_h = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(t.grid))
        for line in (self.cross_v, self.cross_h):
            line.setVisible(False)
            self.price_plot.addItem(line, ignoreBounds=True)
        # The position's entry (with its open PnL), stop-loss and take-profit: labelled at the right edge above the
        # line on a filled box, over the candles and indicator curves; the stop and target are dragged to move them.
        self.position_lines: dict[str, LevelLine] = {}
        for name, which, colour, style in (("entry", "ENTRY", t.accent, QtCore.Qt.PenStyle.SolidLine),
                                           ("sl", "SL", t.down, QtCore.Qt.PenStyle.DashLine),
                                           ("tp", "TP", t.up, QtCore.Qt.PenStyle.DashLine)):
            line = LevelLine(colour, style, movable=name != "entry")
            line.set_fill(t.background)
            line.setZValue(6.5 if name == "entry" else 6.4)
            line.snap = self._snap
            if name != "entry":
                line.on_moved = lambda price, which=which: self.bracket_moved.emit(
                    self.symbol_label.text(), which, self._decimal(price))
            self.price_plot.addItem(line, ignoreBounds=True)
            self.position_lines[name] = line
        self._entry: tuple[Decimal, Decimal] | None = None  # (signed qty, average price) of the shown position
        self._levels_shown: tuple | None = None
        # Working orders of the symbol on screen, by order id; rebuilt only when the rows change.
        self.order_lines: dict[str, LevelLine] = {}
        self._orders_shown: tuple | None = None
        self.order_lines_built = 0  # how many times the order lines were updated (tests: no per-frame rebuilds)
        # Every level's label over every line (the last price's too) and over the candles and markers.
        self.label_layer = LabelLayer(lambda: [*self.position_lines.values(), *self.order_lines.values()])
        self.label_layer.setZValue(20)
        self.price_plot.addItem(self.label_layer, ignoreBounds=True)
        # Fills are diamonds in the side's colour with a light outline: proposals are the (badge-coloured) arrows.
        # Hovering one says what it is ("Fill · BUY 0.100 @ 60,000.0").
        self.fill_markers = pg.ScatterPlotItem(size=9, symbol="d", pen=pg.mkPen(t.text, width=1), hoverable=True,
                                               tip=_marker_tip)
        self.fill_markers.setZValue(6)
        self.price_plot.addItem(self.fill_markers)
        self._fills_shown = -1
        self.proposal_markers = pg.ScatterPlotItem(size=13, pen=pg.mkPen(t.background, width=1), hoverable=True,
                                                   tip=_marker_tip)
        self.proposal_markers.setZValue(6)
        self.price_plot.addItem(self.proposal_markers)
        self._proposals_shown = -1
        self.overlays = IndicatorOverlays(self.price_plot, self.osc_plot)
        self._overlay_buttons["ema"].setChecked(self.overlays.show_ema)
        self._overlay_buttons["vwap"].setChecked(self.overlays.show_vwap)
        self._dragging = False  # a mouse drag pans the view: follow stays off until it ends
        self._drag_left_follow = False  # the drag began while following (pulled away from the live edge)
        for plot in (self.osc_plot, self.volume_plot, self.price_plot):
            plot.vb.sigRangeChangedManually.connect(self._on_manual_range)
            plot.vb.mouseDragEvent = self._wrap_drag(plot.vb.mouseDragEvent)
        self.price_plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.glw.viewport().installEventFilter(self)
        self.price_plot.vb.sigRangeChanged.connect(self._layout_labels)
        # A resize changes how many bars merge into one drawn volume bar, so the volume pane's range with it: fitted
        # once the layout has resized every pane (the x-linked ranges settle only then).
        self._refit_timer = QtCore.QTimer(self, singleShot=True, interval=0)
        self._refit_timer.timeout.connect(lambda: self._fit_y(overlays=False))
        self.volume_plot.vb.sigResized.connect(self._refit_timer.start)

    # ----- public -------------------------------------------------------------------------------------------
    def set_overlay(self, key: str, on: bool) -> None:
        setattr(self.overlays, f"show_{key}", on)
        self._overlay_buttons[key].setChecked(on)
        self._update_overlays()

    def set_oscillator(self, name: str) -> None:
        self.overlays.oscillator = name
        if self.osc_choice.currentText() != name:
            self.osc_choice.setCurrentText(name)
        self._update_overlays()

    def _update_overlays(self, recompute: bool = True) -> None:
        """The indicators over the bars in view. ``recompute=False`` (a pan, no new data): the values computed at
        the last update are re-sliced (the forming bar's value still follows at OVERLAY_LIVE_HZ)."""
        if self._series is None or len(self._x) == 0:
            return
        if recompute:
            self._overlays_at = time.monotonic()
        (x0, x1), _ = self.price_plot.vb.viewRange()
        i0 = int(np.searchsorted(self._x, x0 - self.bar_s, side="left"))
        i1 = int(np.searchsorted(self._x, x1, side="right"))
        self.overlays.update(self._x, self._series.arrays(), i0, i1, self.bar_s, recompute=recompute)

    @property
    def bar_s(self) -> float:
        return TIMEFRAMES[self.timeframe] / 1000.0

    @property
    def drawn_candles(self) -> int:
        return self.candles.drawn_bars + (1 if self.live_candle.bar is not None else 0)

    def set_symbol(self, symbol: str) -> None:
        self.symbol_label.setText(symbol)
        if self.symbol_choice.currentText() != symbol:
            self.symbol_choice.setCurrentText(symbol)
        self._fills_shown = self._proposals_shown = -1
        self._orders_shown = None
        self._view_ready = False
        self.follow = True
        self.follow_button.setChecked(True)

    def set_timeframe(self, tf: str) -> None:
        if tf not in TIMEFRAMES:
            return
        self._tf_buttons[tf].setChecked(True)
        if tf == self.timeframe:
            return
        self.timeframe = tf
        self._closed_key = ()
        self._live_version = -1
        self._view_ready = False
        self._fills_shown = -1
        self.follow = True
        self.follow_button.setChecked(True)
        self.timeframe_changed.emit(tf)

    def set_follow(self, on: bool = True) -> None:
        self.follow = bool(on)
        self.follow_button.setChecked(self.follow)
        if self.follow:
            self._apply_follow()  # back to the live edge with the bars in view the trader chose (End kept no zoom)

    def refresh(self, series: CandleSeries) -> bool:
        """Pull the series; redraw only what changed. Returns True if anything was redrawn."""
        if series is not self._series:
            self._series = series
            self._closed_key = ()
            self._live_version = -1
            self._view_ready = False
        if series.version == self._live_version:
            return self._update_y_if_panned()
        self._live_version = series.version
        a = series.arrays()
        n = len(a.open_ms)
        if n == 0:
            return False
        key = (n, int(a.open_ms[0]), float(a.close[n - 2]) if n > 1 else 0.0, float(a.high[n - 2]) if n > 1 else 0.0)
        closed_changed = key != self._closed_key
        if closed_changed:
            self._closed_key = key
            self._x = a.open_ms.astype(np.float64) / 1000.0  # float64: float32 x makes clipping crawl
            m = n - 1
            self.candles.set_data(
                self._x[:m], a.open[:m], a.high[:m], a.low[:m], a.close[:m], a.volume[:m], self.bar_s, series.version
            )
            self.volume.set_data(
                self._x[:m], a.open[:m], a.high[:m], a.low[:m], a.close[:m], a.volume[:m], self.bar_s, series.version
            )
        bar = (float(self._x[-1]), float(a.open[-1]), float(a.high[-1]), float(a.low[-1]), float(a.close[-1]),
               float(a.volume[-1]))
        self.live_candle.set_bar(bar, self.bar_s)
        self.live_volume.set_bar(bar, self.bar_s)
        self.last_line.set_price(bar[4], up=bar[4] >= bar[1])
        self._fit_axis_to_tag()
        if self.follow:
            self._apply_follow(force=not self._view_ready)
            self._view_ready = True
        self._fit_y(overlays=False)  # the overlays follow below
        # The indicators' forming value moves little within a bar: recomputing and redrawing their curves at the
        # chart's 30 Hz was a third of each frame. They follow closed bars and view changes at once, the forming
        # bar at OVERLAY_LIVE_HZ.
        now = time.monotonic()
        if closed_changed or now - self._overlays_at >= 1.0 / OVERLAY_LIVE_HZ:
            self._update_overlays()
        else:
            self._update_overlays(recompute=False)  # a pan in the same frame as a tick: the curves follow the view
        return True

    def show_position(self, position, bracket, fills, mark: Decimal | None = None) -> None:
        """Entry, stop-loss and take-profit lines for an open position; a diamond per fill (green buy, red sell).

        The entry line reads "LONG 0.500 @ 60,000.0 · +123.45 USDT": the open PnL at ``mark`` (the portfolio's mark
        price), or at the chart's last price when none is given. Stop and target read "SL 59,280.0 · -1.20 %": how
        far from the entry, in the position's favour (+) or against it (-)."""
        sl, tp = bracket
        has_pos = position is not None and position.qty != 0
        self._entry = (position.qty, position.avg_price) if has_pos else None
        levels = (self._entry, sl, tp) if has_pos else None
        if levels != self._levels_shown:  # a new entry, stop or target is brought into view at once
            self._levels_shown = levels
            refit = True
        else:
            refit = False
        if has_pos:
            if mark is None and np.isfinite(self.last_line.value()):
                mark = Decimal(repr(self.last_line.value()))
            entry = self.position_lines["entry"]
            room = self._label_room_px() if self.isVisible() else float("inf")  # unshown: no room to measure yet
            forms = self._entry_texts(mark)
            entry.set_level(float(position.avg_price),
                            next((f for f in forms if entry.label_width_px(f) <= room), forms[-1]))
        else:
            self.position_lines["entry"].set_level(None)
        for name, value in (("sl", sl), ("tp", tp)):
            line = self.position_lines[name]
            if has_pos and value is not None:
                line.text_at = lambda price, name=name: self._bracket_text(name, self._decimal(price))
                line.set_level(float(value), self._bracket_text(name, Decimal(value)))
            else:
                line.set_level(None)
        if refit:
            self._fit_y()
            self._levels_changed()
        shown = (len(fills), fills[-1].id if fills else None)  # the desk keeps its newest fills: count and newest
        if shown == self._fills_shown:
            return
        self._fills_shown = shown
        t = theme.current()
        mine = [f for f in fills if f.symbol == self.symbol_label.text()]
        bar_ms = TIMEFRAMES[self.timeframe]
        self.fill_markers.setData(
            x=[(f.exchange_ms - f.exchange_ms % bar_ms) / 1000.0 + self.bar_s / 2 for f in mine],
            y=[float(f.price) for f in mine],
            symbol=["d"] * len(mine),
            data=[f"Fill · {f.side.value} {self._fmt_volume(f.qty)} @ {self.fmt_price(f.price)}" for f in mine],
            brush=[pg.mkBrush(t.up if f.side.value == "BUY" else t.down) for f in mine],
        )

    def _entry_texts(self, mark: Decimal | None) -> list[str]:
        """The entry's label, longest first: "LONG 0.500 @ 60,000.0 · +123.45 USDT", without the currency, then
        without the price; the chart shows the first that fits the room kept for labels beside the candles."""
        qty, avg = self._entry
        side = f"{'LONG' if qty > 0 else 'SHORT'} {self._fmt_volume(abs(qty))}"
        text = f"{side} @ {self.fmt_price(avg)}"
        if mark is None:
            return [text, side]
        pnl = qty * (mark - avg)
        if self.instrument is not None:
            money, quote = self.instrument.fmt_money(pnl, sign=True), self.instrument.quote
        else:
            money, quote = f"{pnl:+,.2f}", split_symbol(self.symbol_label.text())[1]
        return [f"{text} · {money} {quote}".rstrip(), f"{text} · {money}", f"{side} · {money}"]

    def _label_room_px(self) -> float:
        """The most room kept right of the live candle for level labels: LABEL_ROOM_SHARE of the plot's width and
        LABEL_ROOM_PX at most."""
        return min(self.LABEL_ROOM_SHARE * self.price_plot.vb.width(), self.LABEL_ROOM_PX)

    def _bracket_text(self, name: str, price: Decimal) -> str:
        text = f"{name.upper()} {self.fmt_price(price)}"
        if self._entry is None or not self._entry[1]:
            return text
        qty, avg = self._entry
        pct = (price - avg) / avg * 100 * (1 if qty > 0 else -1)
        return f"{text} · {pct:+.2f} %"

    def show_orders(self, rows) -> None:
        """Working orders as dashed lines by side, labelled "BUY LMT 0.500 @ 60,100.0"; only the symbol on screen's.
        ``rows``: ChartOrder (app/view/chart.py). Limit and stop lines are dragged to move the order
        (``order_moved``). Nothing is redrawn while the rows stay the same."""
        symbol = self.symbol_label.text()
        mine = tuple(r for r in rows if r.symbol == symbol)
        if mine == self._orders_shown and not any(line.pending for line in self.order_lines.values()):
            return
        self._orders_shown = mine
        self.order_lines_built += 1
        t = theme.current()
        keep = {r.order_id for r in mine}
        for oid in [oid for oid in self.order_lines if oid not in keep]:
            gone = self.order_lines.pop(oid)
            gone.set_level(None)  # filled or canceled while dragged: its drop moves nothing
            gone.on_moved = None
            self.price_plot.removeItem(gone)
        for r in mine:
            line = self.order_lines.get(r.order_id)
            if line is None:
                line = LevelLine(t.up if r.side == "BUY" else t.down, QtCore.Qt.PenStyle.DashLine, movable=r.movable)
                line.set_fill(t.background)
                line.setZValue(6.3)
                line.snap = self._snap
                line.on_moved = lambda price, oid=r.order_id: self.order_moved.emit(oid, self._decimal(price))
                self.price_plot.addItem(line, ignoreBounds=True)
                self.order_lines[r.order_id] = line
            line.movable = r.movable
            line.text_at = (lambda price, r=r: r.label) if r.label else (
                lambda price, r=r: self._order_text(r, self._decimal(price)))
            line.set_level(float(r.price), r.label or self._order_text(r, r.price))
        self._levels_changed()

    def _levels_changed(self) -> None:
        self._layout_labels()
        if self.follow and self._view_ready:
            self._apply_follow()  # room for the labels right of the live candle

    def _level_lines(self) -> list[LevelLine]:
        return [line for line in (*self.position_lines.values(), *self.order_lines.values())
                if line.isVisible() and line.text]

    LABEL_ROOM_SHARE = 0.18  # the most of the plot's width kept right of the live candle for level labels
    LABEL_ROOM_PX = 220.0

    def _layout_labels(self, *_args) -> None:
        """Labels that would overlap (an order near the target) are stacked: the position's stay on their lines, a
        later one moves up or down by a label or two (the room beside the candles is narrow); only when that is not
        enough it sits to the left."""
        placed: list[QtCore.QRectF] = []
        plot = self.price_plot.vb.sceneBoundingRect()
        for line in sorted(self._level_lines(), key=lambda line: -line.zValue()):
            line.set_label_shift(0.0, 0.0)
            rect = line.label_scene_rect()
            lift = self._free_lift(rect, placed, plot) if not line.off_view() else None
            shift = 0.0
            if lift is None:
                lift = 0.0
                moved = True
                while moved:
                    moved = False
                    for other in placed:
                        if rect.translated(-shift, 0).intersects(other):
                            shift = rect.right() - other.left() + 4.0
                            moved = True
            line.set_label_shift(shift, lift)
            placed.append(rect.translated(-shift, -lift))

    @staticmethod
    def _free_lift(rect: QtCore.QRectF, placed: list[QtCore.QRectF], plot: QtCore.QRectF) -> float | None:
        """The smallest vertical move (pixels, up +) of at most two labels' height that clears every placed label
        and stays in the plot; None if there is none."""
        limit = 2.2 * rect.height()
        tried: set[float] = set()
        todo = [0.0]
        while todo:
            todo.sort(key=abs)
            lift = todo.pop(0)
            if lift in tried or abs(lift) > limit:
                continue
            tried.add(lift)
            moved = rect.translated(0, -lift)
            hits = [other for other in placed if moved.intersects(other)]
            if not hits:
                if plot.contains(moved):
                    return lift
                continue
            for other in hits:
                todo.append(round(lift + moved.bottom() - other.top() + 2.0, 1))  # up, above it
                todo.append(round(lift - (other.bottom() - moved.top() + 2.0), 1))  # down, below it
        return None

    def _right_margin_s(self) -> float:
        """Room right of the live candle's start when following: four bars, or the candle and the widest label of a
        level in the visible price range (rounded up to 40 px so a changing PnL does not shake the view), at most
        LABEL_ROOM_SHARE of the width and LABEL_ROOM_PX: candles first. An order out of the range has its marker at
        the plot's edge and takes no room (a 57,000 order far below the market shifted the candles left)."""
        widest = max((line.label_width_px() + line.label_shift_px for line in self._level_lines()
                      if not line.off_view()), default=0.0)
        if not widest:
            return self.bar_s * 4
        px = self.price_plot.vb.viewPixelSize()[0]
        room = min(float(np.ceil((widest + 8) / 40.0) * 40.0), self._label_room_px())
        return max(self.bar_s * 4, self.bar_s + room * px)

    def _order_text(self, row: ChartOrder, price: Decimal) -> str:
        return f"{row.side} {TYPE_WORDS.get(row.type, row.type)} {row.qty_text} @ {self.fmt_price(price)}"

    SNAP_PX = 3.0  # a dragged level moves in round steps of about this many pixels

    def snap_step(self) -> Decimal:
        """The step a dragged level moves in: the tick times 1, 2 or 5 x 10^k, the smallest one at least SNAP_PX
        pixels tall at the zoom on screen (a trader places at 57,700, not 57,700.44). Always a multiple of the tick;
        without an instrument the tick is the last of about five significant digits."""
        tick = self.instrument.tick_size if self.instrument is not None else None
        if tick is None or tick <= 0:
            ref = self.last_line.value()
            tick = Decimal(1).scaleb(-price_decimals(ref if np.isfinite(ref) else 1.0))
        px = float(self.price_plot.vb.viewPixelSize()[1])
        if not np.isfinite(px) or px <= 0:
            return tick
        want = self.SNAP_PX * px / float(tick)  # how many ticks make SNAP_PX pixels
        if want <= 1:
            return tick
        decade = Decimal(10) ** int(np.floor(np.log10(want)))
        for m in (1, 2, 5, 10):
            if float(decade * m) >= want:
                return tick * decade * m
        return tick * decade * 10

    def _snap(self, y: float) -> float:
        """A price on the drag's round step (snap_step), so on the instrument's tick."""
        if not np.isfinite(y):
            return y
        step = self.snap_step()
        return float((self._decimal(y) / step).to_integral_value() * step)

    def _decimal(self, price: float) -> Decimal:
        if not np.isfinite(price):
            return Decimal(0)
        if self.instrument is not None:
            return self.instrument.round_price(Decimal(repr(price)))
        return Decimal(f"{price:.{price_decimals(price)}f}")

    def last_price_tag_rect(self) -> QtCore.QRectF:
        """Where the last-price tag is, in scene coordinates (empty when it is not shown)."""
        tag = self.last_line.tag
        return tag.sceneBoundingRect() if tag is not None and tag.isVisible() else QtCore.QRectF()

    def _fit_axis_to_tag(self) -> None:
        # A price longer than the axis is wide (100,000.00 at 2 decimals) widens all three axes alike (x aligned).
        need = int(np.ceil(self.last_line.tag.needed_width)) if self.last_line.tag is not None else 0
        if need > self._axis_width:
            self._axis_width = need
            for plot in (self.price_plot, self.volume_plot, self.osc_plot):
                plot.getAxis("right").setWidth(need)

    def show_proposals(self, decisions, version: int) -> None:
        """An arrow per BUY/SELL decision at the price the model saw, coloured by its cache badge."""
        if version == self._proposals_shown:
            return
        self._proposals_shown = version
        pts = [d for d in decisions if d.body is not None and d.body.action.value in ("BUY", "SELL")
               and d.symbol == self.symbol_label.text()]
        bar_ms = TIMEFRAMES[self.timeframe]
        xs, ys, symbols, brushes, tips = [], [], [], [], []
        for d in pts:
            i = int(np.searchsorted(self._x, (d.state_ms - 1) / 1000.0, side="right")) - 1 if len(self._x) else -1
            if i < 0:
                continue
            a = self._series.arrays()
            buy = d.body.action.value == "BUY"
            xs.append((d.state_ms - 1) // bar_ms * bar_ms / 1000.0 + self.bar_s / 2)
            ys.append(float(a.low[i]) if buy else float(a.high[i]))
            symbols.append("t1" if buy else "t")
            brushes.append(pg.mkBrush(BADGE_COLOURS.get(d.meta.cache_status.value, "#7d8590")))
            tips.append(f"Proposal · {d.body.action.value} ({d.meta.cache_status.value})")
        self.proposal_markers.setData(x=xs, y=ys, symbol=symbols, brush=brushes, data=tips)

    # ----- view range ---------------------------------------------------------------------------------------
    def _apply_follow(self, force: bool = False) -> None:
        if len(self._x) == 0:
            return
        vb = self.price_plot.vb
        (x0, x1), _ = vb.viewRange()
        width = x1 - x0
        if force or width <= 0 or width > self.bar_s * 20_000:
            width = self.bar_s * self.DEFAULT_VISIBLE_BARS
        right = float(self._x[-1]) + self._right_margin_s()
        self._applying_range = True
        try:
            vb.setXRange(right - width, right, padding=0)
        finally:
            self._applying_range = False
        self._fit_y()

    def _fit_y(self, overlays: bool = True) -> None:
        """The y ranges to the bars in view; ``overlays``: the indicator curves to the view too (re-sliced: a zoom
        or a follow step left them on the previous view until the next forming-bar update)."""
        a = self._series.arrays() if self._series is not None else None
        if a is None or len(self._x) == 0:
            return
        (x0, x1), _ = self.price_plot.vb.viewRange()
        self._last_xrange = (x0, x1)
        i0 = int(np.searchsorted(self._x, x0 - self.bar_s, side="left"))
        i1 = int(np.searchsorted(self._x, x1, side="right"))
        if i1 <= i0:
            return
        lo, hi = float(a.low[i0:i1].min()), float(a.high[i0:i1].max())
        # Keep an open position's entry, stop and target in view: a trader must see where they are.
        # The levels' own prices, not where a drag holds them: the range must not run after the mouse.
        for line in self.position_lines.values():
            if line.isVisible() and np.isfinite(line.truth):
                lo, hi = min(lo, line.truth), max(hi, line.truth)
        pad = max((hi - lo) * 0.06, abs(hi) * 1e-5)
        set_y_range(self.price_plot.vb, lo - pad, hi + pad)
        set_y_range(self.volume_plot.vb, 0.0, self._drawn_volume_peak(a.volume, i0, i1) * 1.1 or 1.0)
        if overlays:
            self._update_overlays(recompute=False)

    def _drawn_volume_peak(self, volume: np.ndarray, i0: int, i1: int) -> float:
        """The tallest volume bar drawn for bars [i0, i1). Zoomed out, k closed bars are drawn as one with their
        volumes summed (groups start at multiples of k, as VolumeItem merges them; the forming bar is drawn alone):
        fitted to single bars, every drawn bar overflowed the pane and it was a solid band."""
        k = self.volume.merge_factor(i0, i1)  # the zoom's (from the view's range: its transform follows at paint)
        if k == 1:
            return float(volume[i0:i1].max())
        m = len(volume) - 1  # closed bars
        g0, hi = i0 // k * k, min(i1, m)
        peak = 0.0
        if hi > g0:
            end = min(((hi - 1) // k + 1) * k, m)  # whole groups, as drawn
            peak = float(np.add.reduceat(volume[g0:end], np.arange(0, end - g0, k)).max())
        if i1 > m:
            peak = max(peak, float(volume[m]))
        return peak

    def _update_y_if_panned(self) -> bool:
        (x0, x1), _ = self.price_plot.vb.viewRange()
        if (x0, x1) != self._last_xrange:
            self._fit_y()
            return True
        return False

    def _wrap_drag(self, original):
        """A view box's mouse drag, told to the chart: a left-button drag pans smoothly, never snapped back mid-way
        (a right-button drag zooms, as the wheel does)."""
        def mouse_drag(ev, axis=None):
            pan = ev.button() == QtCore.Qt.MouseButton.LeftButton
            if pan and ev.isStart():
                self._dragging = True
                self._drag_left_follow = self.follow
            try:
                original(ev, axis=axis)
            finally:
                if pan and ev.isFinish() and self._dragging:
                    self._dragging = False
                    self._drag_ended()
        return mouse_drag

    def _live_edge_in_view(self) -> bool:
        (_x0, x1), _ = self.price_plot.vb.viewRange()
        # bool(): the view's range may be numpy floats, and a numpy bool makes setChecked raise (follow stuck on).
        return bool(x1 >= float(self._x[-1]) + self.bar_s)

    def _set_follow_state(self, on: bool) -> None:
        if self.follow != on:
            self.follow = on
            self.follow_button.setChecked(on)

    def _on_manual_range(self, *_args) -> None:
        if self._applying_range or len(self._x) == 0:
            return
        if self._dragging:
            # Each small step of a drag used to find the newest candle still in view, turn follow back on and snap
            # to the live edge: a drag never moved the chart. A drag pans; follow waits for its end.
            self._set_follow_state(False)
            return
        # Zooming (the wheel) with the live edge in view keeps following; taking it out of view stops.
        self._set_follow_state(self._live_edge_in_view())
        if self.follow:
            self._apply_follow()

    def _drag_ended(self) -> None:
        """A drag that brought the live edge back into view follows it again; one that pulled away from it does
        not (End or Live does)."""
        if len(self._x) == 0 or self._drag_left_follow:
            return
        if self._live_edge_in_view():
            self.set_follow(True)

    def set_instrument(self, instrument: Instrument | None) -> None:
        """Prices on this chart (read-out, last-price tag, position lines) in the instrument's precision."""
        if instrument == self.instrument:
            return
        self.instrument = instrument
        d = None if instrument is None else instrument.price_decimals
        self.last_line.set_decimals(d)
        self._orders_shown = None  # order labels are rewritten in the new precision at the next update

    def fmt_price(self, x: float) -> str:
        if self.instrument is not None:
            return self.instrument.fmt_price(x)
        return f"{x:,.{price_decimals(x)}f}"

    def _fmt_volume(self, v: float) -> str:
        return self.instrument.fmt_qty(v) if self.instrument is not None else f"{v:.4f}"

    def _indicator_text(self) -> str:
        v = self.overlays.values
        prices = (("ema_fast", "EMA20"), ("ema_slow", "EMA50"), ("vwap", "VWAP"))  # in price units
        text = "".join(f"  {label} {self.fmt_price(v[k])}" for k, label in prices if k in v)
        return text + "".join(f"  {label} {v[k]:,.2f}" for k, label in (("rsi", "RSI"), ("macd", "MACD")) if k in v)

    # ----- crosshair ----------------------------------------------------------------------------------------
    def _on_mouse_moved(self, pos: QtCore.QPointF) -> None:
        vb = self.price_plot.vb
        inside = self.price_plot.sceneBoundingRect().contains(pos) and self._series is not None
        if not inside or len(self._x) == 0:
            self._hide_crosshair()
            return
        self.cross_v.setVisible(True)
        self.cross_h.setVisible(True)
        p = vb.mapSceneToView(pos)
        self.cross_v.setPos(p.x())
        self.cross_h.setPos(p.y())
        i = int(np.searchsorted(self._x, p.x(), side="right")) - 1
        a = self._series.arrays()
        if not 0 <= i < len(a.open_ms):
            self._set_readout(self.fmt_price(p.y()))
            return
        self._set_readout(
            f"{self._bar_time(float(self._x[i]))}  O {self.fmt_price(a.open[i])}  H {self.fmt_price(a.high[i])}"
            f"  L {self.fmt_price(a.low[i])}  C {self.fmt_price(a.close[i])}  V {self._fmt_volume(a.volume[i])}"
            f"  N {int(a.trades[i])}" + self._indicator_text()
        )

    def _bar_time(self, t: float) -> str:
        """A bar's time, short: 15:05 today, 05 Dec 15:05 this year, 05 Dec 2025 15:05 before (seconds on 1s)."""
        when = dt.datetime.fromtimestamp(t)
        clock = "%H:%M:%S" if self.bar_s < 60 else "%H:%M"
        today = dt.date.today()
        if when.date() == today:
            return when.strftime(clock)
        return when.strftime(("%d %b " if when.year == today.year else "%d %b %Y ") + clock)

    def _set_readout(self, text: str) -> None:
        """The read-out, elided at the room the toolbar gives it (the whole line in its tooltip): at 1600 px the
        Live button cut it mid-number ("O 57,")."""
        self.readout_full = text
        metrics = self.readout.fontMetrics()
        self.readout.setText(metrics.elidedText(text, QtCore.Qt.TextElideMode.ElideRight,
                                                max(0, self.readout.width())))
        self.readout.setToolTip(text)

    def _hide_crosshair(self) -> None:
        self.cross_v.setVisible(False)
        self.cross_h.setVisible(False)
        self._set_readout("")

    def eventFilter(self, obj, event) -> bool:
        kind = event.type()
        if obj is self.glw.viewport() and kind == QtCore.QEvent.Type.Leave:
            self._hide_crosshair()  # the lines and the read-out stayed frozen after the mouse left
        elif obj is self.readout and kind == QtCore.QEvent.Type.Resize and self.readout_full:
            self._set_readout(self.readout_full)
        return False
