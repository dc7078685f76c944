"""Candlestick and volume items drawn from numpy arrays of the visible slice only.

Why not pyqtgraph's QPicture example: it records every candle once and replays them all each frame (~90 ms
at 100k candles). Here each paint takes the visible index range (binary search on x), merges bars when there
are more of them than pixels, and turns the slice into four QPainterPaths with vectorised numpy
(``pg.arrayToQPath``). Paths are cached per (data version, slice, merge factor), so a repaint without a data
change costs only the draw calls. The forming candle is a separate small item: a tick repaints only it.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.ui import theme

_RECT_CONNECT_CACHE: dict[int, np.ndarray] = {}


def set_y_range(vb: pg.ViewBox, lo: float, hi: float, tolerance: float = 0.002) -> None:
    """Change the y range only when it moved noticeably: every change re-lays out and repaints the axis (its tick
    labels are replayed from a QPicture, ~3 ms each), which at 30 Hz was most of a frame."""
    (_, _), (y0, y1) = vb.viewRange()
    span = max(hi - lo, 1e-12)
    if abs(y0 - lo) > span * tolerance or abs(y1 - hi) > span * tolerance:
        vb.setYRange(lo, hi, padding=0)


def rects_path(x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> QtGui.QPainterPath:
    """One path of closed rectangles, built without a Python loop."""
    n = len(x0)
    if n == 0:
        return QtGui.QPainterPath()
    xs = np.empty((n, 5))
    ys = np.empty((n, 5))
    xs[:, 0] = xs[:, 3] = xs[:, 4] = x0
    xs[:, 1] = xs[:, 2] = x1
    ys[:, 0] = ys[:, 1] = ys[:, 4] = y0
    ys[:, 2] = ys[:, 3] = y1
    connect = _RECT_CONNECT_CACHE.get(n)
    if connect is None:
        connect = np.ones((n, 5), dtype=np.int32)
        connect[:, 4] = 0
        connect = connect.ravel()
        if len(_RECT_CONNECT_CACHE) > 8:
            _RECT_CONNECT_CACHE.clear()
        _RECT_CONNECT_CACHE[n] = connect
    return pg.arrayToQPath(xs.ravel(), ys.ravel(), connect=connect, finiteCheck=False)


def segments_path(x: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> QtGui.QPainterPath:
    if len(x) == 0:
        return QtGui.QPainterPath()
    xs = np.repeat(x, 2)
    ys = np.empty(2 * len(x))
    ys[0::2] = y0
    ys[1::2] = y1
    return pg.arrayToQPath(xs, ys, connect="pairs", finiteCheck=False)


def merge_bars(k: int, x, o, h, lo, c, v):
    """Merge every ``k`` consecutive bars into one (first open, max high, min low, last close, summed volume)."""
    n = len(x)
    starts = np.arange(0, n, k)
    ends = np.minimum(starts + k, n) - 1
    return (
        x[starts],
        o[starts],
        np.maximum.reduceat(h, starts),
        np.minimum.reduceat(lo, starts),
        c[ends],
        np.add.reduceat(v, starts),
    )


class _Chunk:
    """The paths of CHUNK_BARS (merged) bars, and the merged bars they were built from: a chunk built for an older
    data version is kept when its bars are still the same (only a new or revised bar rebuilds its own chunk)."""

    __slots__ = ("bars", "paths", "version")

    def __init__(self, version: int, bars: tuple[np.ndarray, ...], paths: tuple[QtGui.QPainterPath, ...]) -> None:
        self.version, self.bars, self.paths = version, bars, paths


class _SeriesItem(pg.GraphicsObject):
    """Shared slicing, merging and path caching for candles and volume bars.

    The bars are cut into chunks of CHUNK_BARS drawn bars at fixed places (chunk c holds bars
    [c * CHUNK_BARS * k, (c + 1) * CHUNK_BARS * k) at merge factor k), each with its own cached paths. A paint draws
    the chunks that meet the view: a pan only builds the chunk it moves into (one every CHUNK_BARS drawn bars),
    never the whole view again. Merge groups start at multiples of k, so the candles drawn do not depend on where the
    view starts (no flicker while panning)."""

    MIN_BAR_PX = 3.0  # narrower than this and bars merge
    CHUNK_BARS = 64  # drawn (merged) bars per cached chunk: the overdraw beside the view is under 64 a side
    MAX_CHUNKS = 32  # cached chunks kept; the ones farthest from the view go first

    def __init__(self) -> None:
        super().__init__()
        self._x = np.empty(0)
        self._o = self._h = self._l = self._c = self._v = np.empty(0)
        self._bar_s = 60.0
        self._version = -1
        self._chunks: dict[int, _Chunk] = {}
        self._chunk_key: tuple = ()  # (merge factor, bar seconds, colours): a change drops every chunk
        self._bounds = QtCore.QRectF()
        self.drawn_bars = 0  # candles (after merging) meeting the view in the last paint, for tests and smoke checks
        self.chunks_built = 0  # chunks whose paths were (re)built, for tests: a pan builds few, a tick none
        self._painted: tuple[int, int, int] = (0, 0, 1)  # (first bar, end bar, merge factor) of the last paint
        self.set_colors(theme.current())

    def set_colors(self, t: theme.Theme) -> None:
        self._up_pen, self._down_pen = pg.mkPen(t.up, width=1), pg.mkPen(t.down, width=1)
        self._up_brush, self._down_brush = pg.mkBrush(t.up), pg.mkBrush(t.down)
        self._chunks.clear()
        self.update()

    def set_data(self, x, o, h, lo, c, v, bar_s: float, version: int) -> None:
        """Arrays are the closed bars (views are fine; they are not modified here). x = bar start, seconds."""
        self._x, self._o, self._h, self._l, self._c, self._v = x, o, h, lo, c, v
        self._bar_s = bar_s
        self._version = version
        self.prepareGeometryChange()
        self._bounds = self._compute_bounds()
        self.update()

    def boundingRect(self) -> QtCore.QRectF:
        return self._bounds

    def visible_slice(self) -> tuple[int, int]:
        x = self._x
        if len(x) == 0:
            return 0, 0
        vr = self.viewRect()
        if vr is None or not vr.isValid():
            return 0, len(x)
        margin = 2 * self._bar_s
        i0 = int(np.searchsorted(x, vr.left() - margin, side="left"))
        i1 = int(np.searchsorted(x, vr.right() + margin, side="right"))
        return i0, i1

    def merge_factor(self, i0: int = 0, i1: int = 0) -> int:
        """Bars drawn as one at the view's zoom. From the view's range and width (what its transform will be at the
        next paint), so the chart fits the volume pane to the same merge before the paint, without updating the
        view's transform early (that signalled every item's transform change twice a refresh)."""
        vb = self.getViewBox()
        if vb is None or vb.width() <= 0:
            return 1
        (x0, x1), _ = vb.viewRange()
        px = (x1 - x0) / vb.width()  # view units (seconds) per pixel
        if not px or not np.isfinite(px):
            return 1
        bar_px = self._bar_s / px
        return max(1, int(np.ceil(self.MIN_BAR_PX / bar_px))) if bar_px < self.MIN_BAR_PX else 1

    def paint(self, p: QtGui.QPainter, *args) -> None:
        i0, i1 = self.visible_slice()
        if i1 <= i0:
            self.drawn_bars = 0
            self._painted = (0, 0, 1)
            return
        k = self.merge_factor(i0, i1)
        key = (k, self._bar_s, self._up_pen.color().rgba(), self._down_pen.color().rgba())
        if key != self._chunk_key:
            self._chunks.clear()
            self._chunk_key = key
        span = self.CHUNK_BARS * k  # raw bars per chunk
        first, last = i0 // span, (i1 - 1) // span
        for c in range(first, last + 1):
            self._draw(p, self._chunk(c, span, k).paths)
        self._evict(first, last)
        self._painted = (i0 // k * k, i1, k)
        self.drawn_bars = (i1 - 1) // k - i0 // k + 1

    def painted_bars(self) -> tuple[np.ndarray, ...]:
        """The (merged) bars x, open, high, low, close, volume whose paths the last paint drew for the view: the
        cached chunks' own bars, so a chunk left stale would show here."""
        i0, i1, k = self._painted
        if i1 <= i0:
            return tuple(np.empty(0) for _ in range(6))
        span = self.CHUNK_BARS * k
        first, last = i0 // span, (i1 - 1) // span
        parts = [self._chunk(c, span, k).bars for c in range(first, last + 1)]  # (rebuilt if dropped since)
        cut = slice(i0 // k - first * self.CHUNK_BARS, (i1 - 1) // k - first * self.CHUNK_BARS + 1)
        return tuple(np.concatenate(col)[cut] for col in zip(*parts, strict=True))

    def _chunk(self, c: int, span: int, k: int) -> _Chunk:
        chunk = self._chunks.get(c)
        if chunk is not None and chunk.version == self._version:
            return chunk
        a, b = c * span, min((c + 1) * span, len(self._x))
        s = slice(a, b)
        bars = merge_bars(k, self._x[s], self._o[s], self._h[s], self._l[s], self._c[s], self._v[s])
        if chunk is not None and all(np.array_equal(u, w) for u, w in zip(bars, chunk.bars, strict=True)):
            chunk.version = self._version  # a newer version, but none of this chunk's bars changed
            return chunk
        chunk = _Chunk(self._version, bars, self._build(bars, self._bar_s * k))
        self._chunks[c] = chunk
        self.chunks_built += 1
        return chunk

    def _evict(self, first: int, last: int) -> None:
        if len(self._chunks) <= self.MAX_CHUNKS:
            return
        mid = (first + last) / 2
        for c in sorted(self._chunks, key=lambda c: abs(c - mid))[self.MAX_CHUNKS:]:
            del self._chunks[c]

    def _compute_bounds(self) -> QtCore.QRectF:
        raise NotImplementedError

    def _build(self, bars: tuple[np.ndarray, ...], width: float) -> tuple[QtGui.QPainterPath, ...]:
        raise NotImplementedError

    def _draw(self, p: QtGui.QPainter, paths: tuple[QtGui.QPainterPath, ...]) -> None:
        raise NotImplementedError


class CandlestickItem(_SeriesItem):
    def _compute_bounds(self) -> QtCore.QRectF:
        if len(self._x) == 0:
            return QtCore.QRectF()
        lo, hi = float(self._l.min()), float(self._h.max())
        return QtCore.QRectF(float(self._x[0]), lo, float(self._x[-1] - self._x[0]) + self._bar_s, hi - lo)

    def _build(self, bars, width: float) -> tuple[QtGui.QPainterPath, ...]:
        x, o, h, lo, c, _v = bars
        up = c >= o
        body_w = width * 0.7  # bars merge below MIN_BAR_PX (3 px), so a body is always at least 2 px wide
        x0 = x + (width - body_w) / 2
        mid = x + width / 2
        paths = []
        for mask in (up, ~up):
            xm, om, cm = x0[mask], o[mask], c[mask]
            paths.append(rects_path(xm, xm + body_w, om, cm))
            paths.append(segments_path(mid[mask], lo[mask], h[mask]))
        return tuple(paths)

    def _draw(self, p, paths) -> None:
        up_body, up_wick, down_body, down_wick = paths
        p.setPen(self._up_pen)
        p.drawPath(up_wick)
        p.setBrush(self._up_brush)
        p.drawPath(up_body)
        p.setPen(self._down_pen)
        p.drawPath(down_wick)
        p.setBrush(self._down_brush)
        p.drawPath(down_body)


class VolumeItem(_SeriesItem):
    def set_colors(self, t: theme.Theme) -> None:
        super().set_colors(t)
        self._up_brush, self._down_brush = pg.mkBrush(t.up_volume), pg.mkBrush(t.down_volume)
        self._up_pen, self._down_pen = pg.mkPen(t.up_volume, width=1), pg.mkPen(t.down_volume, width=1)

    def __init__(self) -> None:
        super().__init__()
        # The closed bars' volumes change only with a new or revised bar, and their pane's range only when the view
        # moves: a tick's repaint is a blit of these pixels (re-filling ~400 translucent bars at 5,000 in view was
        # 1.3 ms a frame); a pan scrolls them and paints only the strip it uncovers.
        self.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)

    def _compute_bounds(self) -> QtCore.QRectF:
        if len(self._x) == 0:
            return QtCore.QRectF()
        # As tall and wide as the bars drawn at any zoom: k merged bars are one bar k bars wide (the newest group
        # too, however few bars it holds) with their volumes summed. The cache and a repaint after new data cover
        # only the bounds: single bars' left the merged bars above and right of them cut or stale.
        n = len(self._x)
        return QtCore.QRectF(float(self._x[0]), 0.0, float(self._x[-1] - self._x[0]) + self._bar_s * (n + 1),
                             float(self._v.sum()))

    def _build(self, bars, width: float) -> tuple[QtGui.QPainterPath, ...]:
        x, o, _h, _l, c, v = bars
        up = c >= o
        w = width * 0.8
        x0 = x + (width - w) / 2
        zeros = np.zeros(len(x))
        return rects_path(x0[up], x0[up] + w, zeros[up], v[up]), rects_path(
            x0[~up], x0[~up] + w, zeros[~up], v[~up]
        )

    def _draw(self, p, paths) -> None:
        up, down = paths
        p.setPen(self._up_pen)
        p.setBrush(self._up_brush)
        p.drawPath(up)
        p.setPen(self._down_pen)
        p.setBrush(self._down_brush)
        p.drawPath(down)


class LiveCandleItem(pg.GraphicsObject):
    """The forming candle (and its volume bar when ``volume`` is set): a tick repaints only this."""

    def __init__(self, volume: bool = False) -> None:
        super().__init__()
        self._volume = volume
        self._bar: tuple[float, float, float, float, float, float] | None = None
        self._bar_s = 60.0
        self.set_colors(theme.current())

    def set_colors(self, t: theme.Theme) -> None:
        up, down = (t.up_volume, t.down_volume) if self._volume else (t.up, t.down)
        self._pens = pg.mkPen(up, width=1), pg.mkPen(down, width=1)
        self._brushes = pg.mkBrush(up), pg.mkBrush(down)
        self.update()

    def set_bar(self, bar: tuple[float, float, float, float, float, float] | None, bar_s: float) -> None:
        self.prepareGeometryChange()
        self._bar, self._bar_s = bar, bar_s
        self.update()

    @property
    def bar(self):
        return self._bar

    def boundingRect(self) -> QtCore.QRectF:
        if self._bar is None:
            return QtCore.QRectF()
        x, _o, h, lo, _c, v = self._bar
        if self._volume:
            return QtCore.QRectF(x, 0.0, self._bar_s, v)
        return QtCore.QRectF(x, lo, self._bar_s, h - lo)

    def paint(self, p: QtGui.QPainter, *args) -> None:
        if self._bar is None:
            return
        x, o, h, lo, c, v = self._bar
        i = 0 if c >= o else 1
        p.setPen(self._pens[i])
        p.setBrush(self._brushes[i])
        w = self._bar_s * (0.8 if self._volume else 0.7)
        x0 = x + (self._bar_s - w) / 2
        if self._volume:
            p.drawRect(QtCore.QRectF(x0, 0.0, w, v))
            return
        mid = x + self._bar_s / 2
        p.drawLine(QtCore.QPointF(mid, lo), QtCore.QPointF(mid, h))
        p.drawRect(QtCore.QRectF(x0, min(o, c), w, abs(c - o)))


def price_decimals(price: float) -> int:
    """Decimals that show a price to about five significant digits: 2 for BTC at 60 000, 4 for XRP at 0.5."""
    if not np.isfinite(price) or price <= 0:
        return 2
    return int(min(8, max(2, 4 - np.floor(np.log10(price)))))


class LastPriceLine(pg.GraphicsObject):
    """The last price: a dashed line across the view; its price tag sits on the price axis (``tag``, set by the
    chart), so it never covers the newest candles.

    pyqtgraph's InfiniteLine with a label did the same through signals, a QTextDocument and two geometry updates:
    half of each chart frame at 30 Hz. Here a new price is one geometry change and one repaint."""

    def __init__(self, t: theme.Theme) -> None:
        super().__init__()
        self._price = float("nan")
        self._text = ""
        self.decimals: int | None = None  # the instrument's price decimals; None: from the price's magnitude
        self._up = True
        self._bounds: QtCore.QRectF | None = None
        self.tag = None  # an AxisPriceTag (app/ui/chart/levels.py) on the price axis, or None: no tag
        self.set_colors(t)

    def set_colors(self, t: theme.Theme) -> None:
        self._line_pen = pg.mkPen(t.muted, style=QtCore.Qt.PenStyle.DashLine)
        self._up_colour, self._down_colour = QtGui.QColor(t.up), QtGui.QColor(t.down)
        if self.tag is not None:
            self.tag.set_colours(t.panel)
        self.update()

    def value(self) -> float:
        return self._price

    @property
    def text(self) -> str:
        return self._text

    def set_decimals(self, decimals: int | None) -> None:
        """The instrument's price decimals (None: from the price's magnitude); the tag is rewritten at once."""
        if decimals == self.decimals:
            return
        self.decimals = decimals
        price, self._price = self._price, float("nan")
        if np.isfinite(price):
            self.set_price(price, self._up)

    def set_price(self, price: float, up: bool) -> None:
        if price == self._price and up == self._up:
            return
        moved = price != self._price
        self._price, self._up = price, up
        d = price_decimals(price) if self.decimals is None else self.decimals
        self._text = f"{price:,.{d}f}"
        if self.tag is not None:
            self.tag.set(price, self._text, self._up_colour if up else self._down_colour)
        if moved:
            self._fit_bounds()
            self.update()

    def viewTransformChanged(self) -> None:  # pyqtgraph calls this when the view pans, zooms or is resized
        self._fit_bounds()
        super().viewTransformChanged()

    def _fit_bounds(self) -> None:
        """Bounds holding the line: the view's width either side of it, a few pixels above and below the price. They
        move only when the line leaves them: a new bounding rect has the scene re-index the item after every chart
        refresh (pyqtgraph's pixelHeight through the device transform each time, ~2 ms a turn in a real window with
        the curves'), and a pan or a small zoom or price step stays inside them."""
        vb = self.getViewBox()
        price = self._price
        if vb is None or not np.isfinite(price) or vb.height() <= 0:
            bounds = QtCore.QRectF()
        else:
            (x0, x1), (y0, y1) = vb.viewRange()
            px = (y1 - y0) / vb.height()  # price per (logical) pixel
            old = self._bounds
            if (old is not None and not old.isEmpty() and old.left() <= x0 and old.right() >= x1
                    and old.top() <= price - 2 * px and old.bottom() >= price + 2 * px and old.height() <= 16 * px):
                return
            width = x1 - x0
            bounds = QtCore.QRectF(x0 - width, price - 4 * px, 3 * width, 8 * px)
        if bounds != self._bounds:
            self.prepareGeometryChange()  # (before the change: the scene reads the old bounds here)
            self._bounds = bounds

    def boundingRect(self) -> QtCore.QRectF:
        return self._bounds if self._bounds is not None else QtCore.QRectF()

    def paint(self, p: QtGui.QPainter, *args) -> None:
        vr = self.viewRect()
        if vr is None or not np.isfinite(self._price):
            return
        p.setPen(self._line_pen)
        p.drawLine(QtCore.QPointF(vr.left(), self._price), QtCore.QPointF(vr.right(), self._price))
