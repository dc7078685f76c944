"""Indicator overlays (EMA fast/slow, session VWAP, Bollinger bands) on the price pane and an oscillator pane (RSI
or MACD), all from app/market/indicators.py.

Only the visible slice is drawn. Values are computed over the slice plus a warm-up tail long enough for the
smoothing to forget its seed (the EMA weights of bars older than WARMUP are below 1e-6 for span 50), and VWAP from
the start of the UTC day of the first visible bar, so what is drawn equals the value over the whole history.

A pan does not recompute them: values are computed for a window three views wide around the view (plus its
warm-up) and a pan inside it only re-slices them (computing and setting four curves was a tenth of a pan's frame).
New or revised bars, the forming bar's update and a change of what is shown compute again.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from app.market import indicators as ind
from app.ui import theme
from app.ui.chart.items import set_y_range

WARMUP = 700
DAY_MS = 86_400_000
EMA_FAST, EMA_SLOW = 20, 50


class _SteadyBoundsCurve(pg.PlotCurveItem):
    """pyqtgraph's curve, whose bounds survive a view change its data did not see.

    pyqtgraph drops a curve's bounds at every view transform change (every pan step, every y refit) and has the scene
    re-index it: the data's min and max again and its pixel vectors through the device transform, for each curve
    after each chart refresh (with the last-price line's, ~2 ms a turn in a real window). Here the data's bounds are
    kept (new data drops them, as before), padded by a few pixels from the view's range (no device transform), and
    replaced only when they no longer hold the data and pen or are a quarter larger than needed."""

    SLACK_PX = 4.0  # kept around the data (pyqtgraph pads by 0.7 px): a live tick's small refit stays inside

    def boundingRect(self) -> QtCore.QRectF:
        if self._boundingRect is None:
            bounds = self._bounds_at_view(self.SLACK_PX)
            if bounds is None:  # no data or no view yet: pyqtgraph's way
                return super().boundingRect()
            self._boundingRect = bounds
        return self._boundingRect

    def viewTransformChanged(self) -> None:
        old = self._boundingRect
        tight = self._bounds_at_view(self.pixelPadding())
        if tight is None or old is None or old.isEmpty():
            self.invalidateBounds()
            self.prepareGeometryChange()
            return
        if old.contains(tight) and old.width() <= tight.width() * 1.25 and old.height() <= tight.height() * 1.25:
            return
        self.prepareGeometryChange()  # (before the change: the scene reads the old bounds here)
        self._boundingRect = self._bounds_at_view(self.SLACK_PX)

    def _bounds_at_view(self, pad_px: float) -> QtCore.QRectF | None:
        """The data's (cached) bounds padded by ``pad_px`` logical pixels of the view (pyqtgraph pads by device
        pixels, at most as many), from the view's range instead of the device transform."""
        vb = self.getViewBox()
        if vb is None or vb.width() <= 0 or vb.height() <= 0:
            return None
        (xmn, xmx), (ymn, ymx) = self.dataBounds(ax=0), self.dataBounds(ax=1)
        if xmn is None or xmx is None or ymn is None or ymx is None:
            return None
        (x0, x1), (y0, y1) = vb.viewRange()
        px, py = pad_px * (x1 - x0) / vb.width(), pad_px * (y1 - y0) / vb.height()
        return QtCore.QRectF(xmn - px, ymn - py, xmx - xmn + 2 * px, ymx - ymn + 2 * py)


class _SteadyCurve(pg.PlotDataItem):
    """pyqtgraph's PlotDataItem drawing through a _SteadyBoundsCurve, without its dynamic range limit: that set the
    curve's data again at every change of the y range (every refit a live tick makes) to clip values a million view
    heights away, which indicators of the bars in view never are."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("dynamicRangeLimit", None)
        super().__init__(*args, **kwargs)
        plain = self.curve
        plain.sigClicked.disconnect(self.sigClicked)
        plain.setParentItem(None)
        self.curve = _SteadyBoundsCurve()
        self.curve.setParentItem(self)
        self.curve.sigClicked.connect(self.sigClicked)
        self.updateItems()  # the pen given to the constructor, on the new curve


class IndicatorOverlays:
    def __init__(self, price_plot: pg.PlotItem, osc_plot: pg.PlotItem) -> None:
        t = theme.current()
        self.price_plot = price_plot
        self.osc_plot = osc_plot
        self.show_ema = True
        self.show_vwap = True
        self.show_bollinger = False
        self.oscillator = "RSI"  # "RSI" | "MACD" | "OFF"
        self.ema_fast = _SteadyCurve(pen=pg.mkPen("#58a6ff", width=1), name=f"EMA {EMA_FAST}")
        self.ema_slow = _SteadyCurve(pen=pg.mkPen("#bc8cff", width=1), name=f"EMA {EMA_SLOW}")
        self.vwap = _SteadyCurve(pen=pg.mkPen(t.accent, width=1, style=QtCore.Qt.PenStyle.DashLine), name="VWAP")
        band_pen = pg.mkPen(t.muted, width=1)
        self.bb_upper = _SteadyCurve(pen=band_pen)
        self.bb_lower = _SteadyCurve(pen=band_pen)
        self.bb_mid = _SteadyCurve(pen=pg.mkPen(t.muted, width=1, style=QtCore.Qt.PenStyle.DotLine))
        for item in (self.ema_fast, self.ema_slow, self.vwap, self.bb_upper, self.bb_lower, self.bb_mid):
            item.setZValue(3)
            price_plot.addItem(item, ignoreBounds=True)
        self.rsi = _SteadyCurve(pen=pg.mkPen("#58a6ff", width=1))
        self.rsi_levels = [pg.InfiniteLine(angle=0, pos=v, pen=pg.mkPen(t.grid, style=QtCore.Qt.PenStyle.DashLine))
                           for v in (30.0, 70.0)]
        self.macd_line = _SteadyCurve(pen=pg.mkPen("#58a6ff", width=1))
        self.macd_signal = _SteadyCurve(pen=pg.mkPen(t.accent, width=1))
        self.macd_hist = pg.BarGraphItem(x=[], height=[], width=1.0, brush=pg.mkBrush(t.grid))
        for item in (self.rsi, *self.rsi_levels, self.macd_hist, self.macd_line, self.macd_signal):
            osc_plot.addItem(item)
        self.values: dict[str, float] = {}  # the latest value of each shown indicator, for the read-out
        self._window: _Window | None = None  # the computed values a pan re-slices
        self._shown: tuple | None = None  # (window, i0, i1) last set on the curves
        self.computed = 0  # how many times the values were computed (tests: a pan computes nothing)

    def update(self, x: np.ndarray, a, i0: int, i1: int, bar_s: float, recompute: bool = True) -> None:
        """``x`` bar starts in seconds; ``a`` the CandleArrays; [i0, i1) the visible slice. ``recompute=False`` (a pan):
        the bars are those of the last update, so values computed then are re-sliced when they cover the view."""
        n = len(x)
        i0, i1 = max(0, min(i0, n)), max(0, min(i1, n))
        if i1 - i0 < 2:
            return
        settings = (self.show_ema, self.show_vwap, self.show_bollinger, self.oscillator, n, bar_s)
        w = self._window
        if recompute or w is None or w.settings != settings or i0 < w.c0 or i1 > w.c1:
            w = self._window = self._compute(x, a, i0, i1, bar_s, settings)
        elif self._shown == (w, i0, i1):
            return  # nothing to set: the same bars in view
        self._shown = (w, i0, i1)
        s = slice(i0 - w.c0, i1 - w.c0)
        xs = w.xs[s]
        self.values = {}
        self._set(self.ema_fast, self.show_ema, xs, w.get("ema_fast", s), "ema_fast")
        self._set(self.ema_slow, self.show_ema, xs, w.get("ema_slow", s), "ema_slow")
        self._set(self.vwap, self.show_vwap, xs, w.get("vwap", s), "vwap")
        for item, part in ((self.bb_upper, "upper"), (self.bb_lower, "lower"), (self.bb_mid, "middle")):
            self._set(item, self.show_bollinger, xs, w.get(part, s), None)
        self._oscillator(w, s, xs, bar_s)

    def _compute(self, x: np.ndarray, a, i0: int, i1: int, bar_s: float, settings: tuple) -> _Window:
        """Every shown indicator over [c0, c1): the view and a view's width either side (clipped to the bars),
        from a warm-up of WARMUP bars before c0 (VWAP: from the start of c0's UTC day)."""
        self.computed += 1
        n = len(x)
        c0, c1 = max(0, i0 - (i1 - i0)), min(n, i1 + (i1 - i0))
        w0 = max(0, c0 - WARMUP)
        close = a.close[w0:c1]
        k = c0 - w0
        out: dict[str, np.ndarray] = {}
        if self.show_ema:
            out["ema_fast"] = ind.ema(close, EMA_FAST)[k:]
            out["ema_slow"] = ind.ema(close, EMA_SLOW)[k:]
        if self.show_vwap:
            out["vwap"] = self._vwap(a, c0, c1)
        if self.show_bollinger:
            bands = ind.bollinger(close)
            out.update(upper=bands.upper[k:], lower=bands.lower[k:], middle=bands.middle[k:])
        if self.oscillator == "RSI":
            out["rsi"] = ind.rsi(close)[k:]
        elif self.oscillator == "MACD":
            m = ind.macd(close)
            out.update(macd_line=m.line[k:], macd_signal=m.signal[k:], macd_hist=m.histogram[k:])
        return _Window(settings, c0, c1, x[c0:c1] + bar_s / 2, out)

    def _vwap(self, a, i0: int, i1: int) -> np.ndarray:
        day0 = int(a.open_ms[i0]) // DAY_MS * DAY_MS
        d0 = int(np.searchsorted(a.open_ms, day0, side="left"))
        s = slice(d0, i1)
        v = ind.session_vwap(a.open_ms[s], a.high[s], a.low[s], a.close[s], a.volume[s])
        return v[i0 - d0:]

    def _set(self, item: pg.PlotDataItem, show: bool, xs: np.ndarray, y: np.ndarray | None, key: str | None) -> None:
        item.setVisible(show)
        if not show or y is None:
            return
        item.setData(xs, y)
        if key is not None and len(y) and np.isfinite(y[-1]):
            self.values[key] = float(y[-1])

    def _oscillator(self, w: _Window, s: slice, xs: np.ndarray, bar_s: float) -> None:
        rsi_on, macd_on = self.oscillator == "RSI", self.oscillator == "MACD"
        self.osc_plot.setVisible(rsi_on or macd_on)
        for item in (self.rsi, *self.rsi_levels):
            item.setVisible(rsi_on)
        for item in (self.macd_line, self.macd_signal, self.macd_hist):
            item.setVisible(macd_on)
        if rsi_on:
            y = w.get("rsi", s)
            self.rsi.setData(xs, y)
            set_y_range(self.osc_plot.vb, -2.0, 102.0)
            if len(y) and np.isfinite(y[-1]):
                self.values["rsi"] = float(y[-1])
        elif macd_on:
            line, sig, hist = w.get("macd_line", s), w.get("macd_signal", s), w.get("macd_hist", s)
            self.macd_line.setData(xs, line)
            self.macd_signal.setData(xs, sig)
            t = theme.current()
            up, down = pg.mkBrush(t.up_volume), pg.mkBrush(t.down_volume)  # two brushes, not one made per bar
            self.macd_hist.setOpts(x=xs, height=np.nan_to_num(hist), width=bar_s * 0.8,
                                   brushes=[up if h >= 0 else down for h in hist.tolist()])
            finite = np.concatenate([line[np.isfinite(line)], sig[np.isfinite(sig)], hist[np.isfinite(hist)]])
            if finite.size:
                lo, hi = float(finite.min()), float(finite.max())
                pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
                set_y_range(self.osc_plot.vb, lo - pad, hi + pad)
            if len(line) and np.isfinite(line[-1]):
                self.values["macd"] = float(line[-1])


class _Window:
    """Indicator values computed over the bars [c0, c1), for the settings they were computed with."""

    __slots__ = ("c0", "c1", "settings", "values", "xs")

    def __init__(self, settings: tuple, c0: int, c1: int, xs: np.ndarray, values: dict[str, np.ndarray]) -> None:
        self.settings, self.c0, self.c1, self.xs, self.values = settings, c0, c1, xs, values

    def get(self, key: str, s: slice) -> np.ndarray | None:
        v = self.values.get(key)
        return None if v is None else v[s]
