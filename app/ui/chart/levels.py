"""Price levels on the chart: the position's entry, stop-loss and take-profit, and the working orders.

Each level is one item that paints a horizontal line across the view and its label at the right edge, just above
the line (below it when the plot's top leaves no room), on a filled box so it reads over candles. A level changes
only when its price or text does: the chart's 30 Hz refresh costs a comparison, not a repaint.

Movable levels (a working limit or stop order, the position's stop-loss and take-profit) are dragged with the left
button. The line follows the mouse on the instrument's tick; on release ``on_moved(price)`` is called (the chart
turns it into a Qt signal for the desk). The dropped price stays shown while the desk answers (``PENDING_S``); when
the truth changes it is shown at once, and if it has not changed by then (the move was refused) the line goes back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

TYPE_WORDS = {"LIMIT": "LMT", "STOP_MARKET": "STP", "STOP_LIMIT": "STP LMT", "MARKET": "MKT"}


class LevelLine(pg.GraphicsObject):
    """A price level: a line across the view and a label box at its right edge, in one item."""

    PAD_PX = 3.0  # inside the label box
    GAP_PX = 2.0  # between the line and its label
    MARGIN_PX = 4.0  # between the label and the plot's right edge
    GRAB_PX = 5.0  # a press this close to the line grabs it
    PENDING_S = 3.0  # how long a dropped price is shown while the desk answers

    def __init__(self, colour: str, style: QtCore.Qt.PenStyle = QtCore.Qt.PenStyle.SolidLine, *,
                 movable: bool = False) -> None:
        super().__init__()
        self.colour = QtGui.QColor(colour)
        self.pen = pg.mkPen(self.colour, style=style)
        self._fill = QtGui.QColor(13, 17, 23, 215)  # the theme's background, mostly opaque: the text reads over bars
        self.movable = movable
        self._price = float("nan")
        self._text = ""
        self._font = QtGui.QFont()
        self._metrics = QtGui.QFontMetricsF(self._font)
        self._text_w = 0.0
        self._bounds: QtCore.QRectF | None = None
        # The owner's parts: what the label says at a price (for a drag), snapping to the tick, the drop callback.
        self.text_at: Callable[[float], str] | None = None
        self.snap: Callable[[float], float] = lambda y: y
        self.on_moved: Callable[[float], None] | None = None
        self.truth = float("nan")  # the price the last update said
        self._truth_text = ""
        self.dragging = False
        self.pending: tuple[float, float, float] | None = None  # (dropped price, until monotonic, truth then)
        self._grab_offset = 0.0
        self.label_shift_px = 0.0  # how far left of the right edge the label sits (the chart moves it off another)
        self.label_lift_px = 0.0  # how far above (+) or below (-) its place the label sits (off another one)
        self.setVisible(False)

    # ----- state ------------------------------------------------------------------------------------------------
    def value(self) -> float:
        return self._price

    @property
    def text(self) -> str:
        return self._text

    def label_width_px(self, text: str | None = None) -> float:
        """The room the label takes from the plot's right edge (of ``text`` if given, else of its own)."""
        if text is not None:
            return self._metrics.horizontalAdvance(text) + 2 * self.PAD_PX + self.MARGIN_PX if text else 0.0
        return self._text_w + 2 * self.PAD_PX + self.MARGIN_PX if self._text else 0.0

    def off_view(self) -> int:
        """+1: the price is above the visible price range, -1: below it, 0: inside (or not shown)."""
        vr = self.viewRect()
        if vr is None or not np.isfinite(self._price):
            return 0
        lo, hi = min(vr.top(), vr.bottom()), max(vr.top(), vr.bottom())
        return 1 if self._price > hi else -1 if self._price < lo else 0

    @property
    def shown_text(self) -> str:
        """The label as drawn: with an arrow at the plot's top or bottom edge when the price is out of view."""
        side = self.off_view()
        if not side or not self._text:
            return self._text
        return f"{self._text} {'↑' if side > 0 else '↓'}"

    def set_label_shift(self, px: float, lift: float = 0.0) -> None:
        if px != self.label_shift_px or lift != self.label_lift_px:
            self.prepareGeometryChange()
            self._bounds = None
            self.label_shift_px, self.label_lift_px = px, lift
            self.update()

    def set_fill(self, colour: str) -> None:
        c = QtGui.QColor(colour)
        c.setAlpha(215)
        self._fill = c
        self.update()

    def set_level(self, price: float | None, text: str = "") -> bool:
        """Show the level at ``price`` (None: hidden). Returns True if anything changed on screen."""
        if price is None:
            self.truth, self._truth_text, self.pending = float("nan"), "", None
            self.dragging = False  # gone while dragged (filled, canceled, position closed): nothing to move
            if self.isVisible():
                self.setVisible(False)
                return True
            return False
        self.truth, self._truth_text = price, text
        if self.dragging:
            return False
        if self.pending is not None:
            _dropped, until, truth_then = self.pending
            if price == truth_then and time.monotonic() < until:
                return False  # the desk has not answered yet: keep showing where it was dropped
            self.pending = None
        changed = self._show(price, text)
        if not self.isVisible():
            self.setVisible(True)
            changed = True
        return changed

    def _show(self, price: float, text: str) -> bool:
        if price == self._price and text == self._text:
            return False
        self.prepareGeometryChange()
        self._bounds = None
        if text != self._text:
            self._text = text
            self._text_w = self._metrics.horizontalAdvance(text)
        self._price = price
        self.update()
        return True

    # ----- dragging (mouse events call these; tests may too) ---------------------------------------------------
    def drag_start(self, grab_y: float | None = None) -> None:
        self.dragging = True
        self._grab_offset = 0.0 if grab_y is None else self._price - grab_y

    def drag_move(self, y: float) -> None:
        if not self.dragging:
            return
        price = self.snap(y + self._grab_offset)
        self._show(price, self.text_at(price) if self.text_at is not None else self._text)

    def drag_finish(self) -> None:
        if not self.dragging:
            return
        self.dragging = False
        price = self._price
        if price == self.truth:
            return
        self.pending = (price, time.monotonic() + self.PENDING_S, self.truth)
        if self.on_moved is not None:
            self.on_moved(price)

    def mouseDragEvent(self, ev) -> None:  # pyqtgraph's scene calls this for a drag that starts on the item
        if not self.movable or ev.button() != QtCore.Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        if ev.isStart():
            if self.off_view():  # its label at the edge marks a price out of view: nothing there to drag
                ev.ignore()
                return
            self.drag_start(self.mapFromScene(ev.buttonDownScenePos()).y())
        elif not self.dragging:
            ev.ignore()
            return
        self.drag_move(self.mapFromScene(ev.scenePos()).y())
        if ev.isFinish():
            self.drag_finish()

    def hoverEvent(self, ev) -> None:
        if (self.movable and not ev.isExit() and not self.off_view()
                and ev.acceptDrags(QtCore.Qt.MouseButton.LeftButton)):
            self.setCursor(QtCore.Qt.CursorShape.SizeVerCursor)
        else:
            self.unsetCursor()

    # ----- geometry and painting --------------------------------------------------------------------------------
    def viewTransformChanged(self) -> None:  # pyqtgraph calls this when the view pans or zooms
        self.prepareGeometryChange()
        self._bounds = None
        super().viewTransformChanged()

    def label_rect(self) -> QtCore.QRectF:
        """The label box in view coordinates: at the right edge, above the line (below it without room above); at
        the plot's top or bottom edge when the price is out of view."""
        vr = self.viewRect()
        pw, ph = self.pixelWidth() or 0.0, self.pixelHeight() or 0.0
        if vr is None or not np.isfinite(self._price) or not self._text:
            return QtCore.QRectF()
        side = self.off_view()
        text_w = self._text_w + (self._metrics.horizontalAdvance(" ↑") if side else 0.0)
        w = (text_w + 2 * self.PAD_PX) * pw
        h = (self._metrics.height() + self.PAD_PX) * ph
        gap = self.GAP_PX * ph
        right = vr.right() - (self.MARGIN_PX + self.label_shift_px) * pw
        top_of_view = max(vr.top(), vr.bottom())  # y grows upwards in the view
        if side > 0:
            bottom = top_of_view - gap - h
        elif side < 0:
            bottom = min(vr.top(), vr.bottom()) + gap
        else:
            bottom = self._price + gap if self._price + gap + h <= top_of_view else self._price - gap - h
            bottom += self.label_lift_px * ph
        return QtCore.QRectF(right - w, bottom, w, h)

    def label_scene_rect(self) -> QtCore.QRectF:
        return self.mapRectToScene(self.label_rect())

    def boundingRect(self) -> QtCore.QRectF:
        if self._bounds is None:
            vr = self.viewRect()
            if vr is None or not np.isfinite(self._price):
                self._bounds = QtCore.QRectF()
            elif self.off_view():
                self._bounds = self.label_rect()
            else:
                half = self.GRAB_PX * (self.pixelHeight() or 0.0)
                band = QtCore.QRectF(vr.left(), self._price - half, vr.width(), 2 * half)
                self._bounds = band.united(self.label_rect())
        return self._bounds

    def shape(self) -> QtGui.QPainterPath:
        path = QtGui.QPainterPath()
        b = self.boundingRect()
        if b.isValid():
            if not self.off_view():
                half = self.GRAB_PX * (self.pixelHeight() or 0.0)
                path.addRect(QtCore.QRectF(b.left(), self._price - half, b.width(), 2 * half))
            path.addRect(self.label_rect())
        return path

    def paint(self, p: QtGui.QPainter, *args) -> None:
        """The line only: its label is drawn by the chart's LabelLayer, above every line (the last price's too)."""
        vr = self.viewRect()
        if vr is None or not np.isfinite(self._price) or self.off_view():
            return
        y = self._price
        p.setPen(self.pen)
        p.drawLine(QtCore.QPointF(vr.left(), y), QtCore.QPointF(vr.right(), y))

    def paint_label(self, p: QtGui.QPainter) -> None:
        """The label box, with ``p`` in view coordinates (the LabelLayer's painter)."""
        if not self._text or not self.isVisible():
            return
        box = p.transform().mapRect(self.label_rect())  # in device pixels: the text keeps its size at any zoom
        p.save()
        p.resetTransform()
        p.setFont(self._font)
        p.setPen(QtGui.QPen(self.colour))
        p.setBrush(self._fill)
        p.drawRect(box)
        p.drawText(box, QtCore.Qt.AlignmentFlag.AlignCenter, self.shown_text)
        p.restore()


class LabelLayer(pg.GraphicsObject):
    """The level lines' labels, in one item above every line: the last-price line struck through the position's
    label when each level drew its own. It takes no mouse (a label is grabbed through its level's shape) and paints
    only where the scene repaints, so a moving label costs what it did."""

    def __init__(self, lines: Callable[[], list[LevelLine]]) -> None:
        super().__init__()
        self._lines = lines
        self._bounds: QtCore.QRectF | None = None
        self.setAcceptedMouseButtons(QtCore.Qt.MouseButton.NoButton)
        self.setAcceptHoverEvents(False)
        # The exposed rectangle comes with each paint: a tick's repaint of the live candle draws no label far away.
        self.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def viewTransformChanged(self) -> None:
        self.prepareGeometryChange()
        self._bounds = None
        super().viewTransformChanged()

    def boundingRect(self) -> QtCore.QRectF:
        if self._bounds is None:
            vr = self.viewRect()
            self._bounds = QtCore.QRectF() if vr is None else QtCore.QRectF(vr)
        return self._bounds

    def shape(self) -> QtGui.QPainterPath:
        return QtGui.QPainterPath()  # never under the mouse

    def paint(self, p: QtGui.QPainter, option=None, *args) -> None:
        exposed = option.exposedRect if option is not None else None
        for line in sorted(self._lines(), key=lambda line: line.zValue()):
            if exposed is None or exposed.intersects(line.label_rect()):
                line.paint_label(p)


class AxisPriceTag(QtWidgets.QGraphicsItem):
    """The last price's tag, drawn on the price axis (the gutter right of the plot) so it never covers the newest
    candles. A child of the axis item; placed at the price's height whenever the price or the view changes.

    It is the axis's own label for the last price: a box the axis's width, filled in the price's colour (up / down)
    with the text in the background's, so it replaces the tick label under it whole instead of cutting half of it."""

    PAD_PX = 3.0

    def __init__(self, axis: pg.AxisItem, vb: pg.ViewBox) -> None:
        super().__init__(axis)
        self._axis, self._vb = axis, vb
        self._price = float("nan")
        self._text = ""
        self._colour = QtGui.QColor("#26a69a")
        self._fill = QtGui.QColor("#161b22")
        self._font = QtGui.QFont()
        self._metrics = QtGui.QFontMetricsF(self._font)
        self._size = QtCore.QSizeF(0, 0)
        self._axis_w = 0.0
        self.setZValue(10)
        self.setVisible(False)
        vb.sigRangeChanged.connect(self.place)
        vb.sigResized.connect(self.place)

    @property
    def needed_width(self) -> float:
        return self._size.width() + 2

    def set_colours(self, fill: str) -> None:
        self._fill = QtGui.QColor(fill)
        self.update()

    def set(self, price: float, text: str, colour: QtGui.QColor) -> None:
        if text != self._text:
            self.prepareGeometryChange()
            self._text = text
            self._size = QtCore.QSizeF(self._metrics.horizontalAdvance(text) + 2 * self.PAD_PX,
                                       self._metrics.height() + self.PAD_PX)
        if colour != self._colour:
            self._colour = colour
            self.update()
        if price != self._price:
            self._price = price
            self.place()

    def place(self, *_args) -> None:
        if not np.isfinite(self._price):
            self.setVisible(False)
            return
        y_scene = self._vb.mapViewToScene(QtCore.QPointF(0.0, self._price)).y()
        y = self._axis.mapFromScene(QtCore.QPointF(0.0, y_scene)).y()
        inside = 0.0 <= y <= self._axis.boundingRect().height()
        axis_w = float(self._axis.width())
        if axis_w != self._axis_w:
            self.prepareGeometryChange()
            self._axis_w = axis_w
        if inside:
            self.setPos(1.0, y)
        if self.isVisible() != inside:
            self.setVisible(inside)

    def boundingRect(self) -> QtCore.QRectF:
        w = max(self._size.width(), self._axis_w - 2.0)
        return QtCore.QRectF(0.0, -self._size.height() / 2, w, self._size.height())

    def paint(self, p: QtGui.QPainter, *args) -> None:
        box = self.boundingRect()
        p.setFont(self._font)
        p.setPen(QtGui.QPen(self._colour))
        p.setBrush(self._colour)
        p.drawRect(box)
        p.setPen(QtGui.QPen(self._fill))
        p.drawText(box, QtCore.Qt.AlignmentFlag.AlignCenter, self._text)
