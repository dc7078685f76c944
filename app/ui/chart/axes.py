"""The chart's axes: pyqtgraph's, drawn faster, with the same pixels.

Each axis draws its grid across the whole plot, and a pan or a y refit redraws it: the price axis' 56 grid and tick
lines took 1.6 ms as Qt's translucent cosmetic lines (about 20 ns a pixel) and 0.13 ms as one-pixel rectangles
filled with the same colour. A one-pixel aliased line from (x0, y) to (x1, y) in device pixels covers the row
floor(y) from column floor(x0) to floor(x1) (measured; rectangles placed from the unrounded coordinates miss it by a
pixel near whole numbers), so each rectangle is placed on those whole device pixels, from the translation the
painter has when the axis is painted (tests/ui/test_chart_pan_frame.py compares the rendered images with
pyqtgraph's own drawing, at a device pixel ratio of 1 and 2). A scaled or rotated painter or a high-DPI device draws
the lines as pyqtgraph does.

The time axis also remembers each tick's label: a pan shows mostly the same ticks again, and formatting them (time
zone, strftime) was about a fifth of its redraw. A label depends only on its value, the zoom level's format for the
spacing and the UTC offset.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6 import QtCore, QtGui


class _RectLines:
    """drawPicture with axis-parallel lines of a one-pixel cosmetic solid pen filled as whole-pixel rectangles."""

    use_rects = True  # False: pyqtgraph's own drawing (tests compare the two)
    _offset: tuple[float, float] | None = None  # the painter's translation the picture was recorded for (None: lines)

    def paint(self, p, opt, widget) -> None:
        t = p.transform()  # (t.type() crashed PySide6 6.12 here)
        device = p.device()
        # A high-DPI device scales below the painter's transform (a 2x screen: a cosmetic line is one device pixel,
        # a one-unit rectangle two): lines there.
        hidpi = device is not None and device.devicePixelRatioF() != 1.0
        offset = None if not self.use_rects or hidpi or t.isScaling() or t.isRotating() else (t.dx(), t.dy())
        if offset != self._offset:
            self._offset = offset
            self.picture = None  # recorded for another translation or kind of painter
        super().paint(p, opt, widget)

    def drawPicture(self, p, axisSpec, tickSpecs, textSpecs) -> None:
        offset = self._offset
        if offset is None:
            super().drawPicture(p, axisSpec, tickSpecs, textSpecs)
            return
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, False)
        p.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing, True)
        for pen, p1, p2 in (axisSpec, *tickSpecs):
            self._line(p, offset, pen, p1, p2)
        if self.style["tickFont"] is not None:
            p.setFont(self.style["tickFont"])
        p.setPen(self.textPen())
        p.setClipRect(self.boundingRect().toAlignedRect())
        for rect, flags, text in textSpecs:
            p.drawText(rect, int(flags), text)

    @staticmethod
    def _line(p: QtGui.QPainter, offset: tuple[float, float], pen: QtGui.QPen, p1, p2) -> None:
        x0, y0, x1, y1 = p1.x(), p1.y(), p2.x(), p2.y()
        thin = (pen.isCosmetic() and pen.widthF() <= 1.0 and pen.style() == QtCore.Qt.PenStyle.SolidLine
                and pen.brush().style() == QtCore.Qt.BrushStyle.SolidPattern)
        dx, dy = offset
        if thin and y0 == y1 and x0 != x1:
            c0, c1 = sorted((math.floor(x0 + dx), math.floor(x1 + dx)))
            p.fillRect(QtCore.QRectF(c0 - dx, math.floor(y0 + dy) - dy, c1 - c0 + 1, 1.0), pen.color())
        elif thin and x0 == x1 and y0 != y1:
            r0, r1 = sorted((math.floor(y0 + dy), math.floor(y1 + dy)))
            p.fillRect(QtCore.QRectF(math.floor(x0 + dx) - dx, r0 - dy, 1.0, r1 - r0 + 1), pen.color())
        else:
            p.setPen(pen)
            p.drawLine(p1, p2)


class PriceAxis(_RectLines, pg.AxisItem):
    """A value axis (price, volume, oscillator): pyqtgraph's AxisItem, its grid and tick lines filled."""


class TimeAxis(_RectLines, pg.DateAxisItem):
    """The time axis: pyqtgraph's DateAxisItem, its grid and tick lines filled and each tick's label remembered."""

    _LABELS_KEPT = 4096

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._labels: dict[tuple, str] = {}

    def tickStrings(self, values, scale, spacing):
        level = (id(self.zoomLevel), self.utcOffset, scale, spacing)
        labels = self._labels
        todo = [v for v in values if (level, v) not in labels]
        if todo:
            if len(labels) > self._LABELS_KEPT:
                labels.clear()
            for v, text in zip(todo, super().tickStrings(todo, scale, spacing), strict=True):
                labels[(level, v)] = text
        return [labels[(level, v)] for v in values]
