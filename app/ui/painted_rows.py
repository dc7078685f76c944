"""Lines of right-aligned texts over size bars, all painted by one widget: the Order book ladder and the Trades tape.

A dock of 40-60 small row widgets cost Qt ~40 µs a widget to paint (a painter, the style sheet's background, the
clip) at every 4 Hz refresh, outside the terminal's timed frames. Here a line is a plain object: a refresh sets its
values, the widget asks Qt once for the bands of the lines that changed, and ``paintEvent`` draws only those, over
its own background (an opaque widget: Qt paints no parent under it). What a line draws is worked out at its first
paint after a change (positions, bar widths, colours); a text's width is measured once, and a text drawn often (a
price that stays) is shaped once (``QStaticText``). ``shift_down``: a tape whose lines all moved down has Qt move
the painted pixels instead of painting them again.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6 import QtCore, QtGui, QtWidgets

from app.ui import theme

PAD = 6  # pixels of margin at each side of a line
SHAPE_AFTER = 3  # a text is shaped once drawn this many times (a price that stays; most sizes are drawn once)
TEXT_CACHE = 4096  # texts kept shaped per font (a 4 Hz ladder and tape show a few hundred distinct texts a minute)

_COLOURS: dict[tuple[str, int], QtGui.QColor] = {}


def colour(name: str, alpha: int = 255) -> QtGui.QColor:
    c = _COLOURS.get((name, alpha))
    if c is None:
        if len(_COLOURS) > 256:
            _COLOURS.clear()
        c = _COLOURS[(name, alpha)] = QtGui.QColor(name)
        c.setAlpha(alpha)
    return c


def row_height(font: QtGui.QFont) -> int:
    return QtGui.QFontMetrics(font).height() + 3


class _Face:
    """A font (bold or not), its metrics, each text's width, and the texts drawn often already shaped
    (``QStaticText``: ~1.8 µs to draw against ~3 µs for ``drawText``, but ~11 µs to make: a size drawn once, and most
    are, is drawn plainly; a price that stays on the ladder is shaped at its third paint)."""

    __slots__ = ("ascent", "baseline", "fm", "font", "seen", "statics", "widths")

    def __init__(self, font: QtGui.QFont, line_height: int) -> None:
        self.font = font
        self.fm = QtGui.QFontMetrics(font)
        self.ascent = self.fm.ascent()
        self.baseline = (line_height - self.fm.height()) // 2 + self.ascent  # in a line, centred
        self.widths: dict[str, int] = {}
        self.seen: dict[str, int] = {}  # times drawn plainly
        self.statics: dict[str, QtGui.QStaticText] = {}

    def width(self, text: str) -> int:
        w = self.widths.get(text)
        if w is None:
            if len(self.widths) > TEXT_CACHE:
                self.widths.clear()
            w = self.widths[text] = self.fm.horizontalAdvance(text)
        return w

    def item(self, text: str) -> str | QtGui.QStaticText:
        """What to draw for ``text``: itself until it has been drawn ``SHAPE_AFTER`` times, then its shaped form."""
        s = self.statics.get(text)
        if s is not None:
            return s
        n = self.seen.get(text, 0) + 1
        if n < SHAPE_AFTER:
            if len(self.seen) > TEXT_CACHE:
                self.seen.clear()
            self.seen[text] = n
            return text
        if len(self.statics) > TEXT_CACHE:
            self.statics.clear()
        s = self.statics[text] = QtGui.QStaticText(text)
        s.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        s.prepare(QtGui.QTransform(), self.font)
        return s


class Line:
    """One line of the widget: its texts (one per column), their colours, bars, weight and tint. ``texts`` are the
    full texts (tests, the tooltip); ``drawn_texts()`` what fits its column. Reads like the row widgets it replaces
    (``geometry()``, ``isVisible()``, ``toolTip()``) so a test asks the same questions."""

    __slots__ = ("_ops", "_ops_gen", "bar", "bar_color", "bold", "colors", "depth_bar", "dirty", "short", "texts",
                 "tint", "top", "view", "visible")
    clickable = False  # a click on it means something (a ladder level)
    hoverable = True  # lit under the mouse
    columns: tuple[float, ...] | None = None  # shares of the width, when not the widget's (the spread line)

    def __init__(self, view: PaintedRows) -> None:
        self.view = view
        n = len(self.columns or view.columns)
        self.texts: tuple[str, ...] = ("",) * n
        self.short: tuple[str, ...] = ()  # a compact form of each text, drawn when the full one does not fit
        self.colors: tuple[str | None, ...] = (None,) * n  # None: the theme's text colour
        self.bar = 0.0  # 0..1 of the width, drawn from the right edge
        self.depth_bar = 0.0  # a fainter bar under it (the cumulative size)
        self.bar_color: str | None = None
        self.bold = False
        self.tint: str | None = None  # a background tint across the whole line
        self.dirty = False  # changed since the widget last asked Qt to paint it
        self.top = 0  # y in the widget
        self.visible = False  # placed in the widget (a short dock hides the farthest lines)
        # what paintEvent draws, made at the first paint after a change: (fills, texts), for the widget's size
        self._ops: tuple[tuple, tuple] | None = None
        self._ops_gen = -1

    def show_values(self, texts: tuple[str, ...], colors: tuple[str | None, ...], bar: float = 0.0,
                    bar_color: str | None = None, bold: bool = False, tint: str | None = None,
                    depth_bar: float = 0.0, short: tuple[str, ...] = ()) -> bool:
        """Set what the line shows; True when something the trader sees changed (a bar is compared in pixels at
        the widget's width), and only then is it painted again. ``short``: a compact form of each text ("17.3K"),
        drawn in a column too narrow for the full one."""
        px = self.view.bar_px
        if (texts == self.texts and colors == self.colors and bar_color == self.bar_color and bold == self.bold
                and tint == self.tint and short == self.short and px(bar) == px(self.bar)
                and px(depth_bar) == px(self.depth_bar)):
            return False
        self.texts, self.colors, self.bar, self.depth_bar, self.short = texts, colors, bar, depth_bar, short
        self.bar_color, self.bold, self.tint = bar_color, bold, tint
        self.dirty = True
        self._ops = None
        return True

    def toolTip(self) -> str:  # the row widgets' name: tests ask the same
        return ""

    def geometry(self) -> QtCore.QRect:
        """Where the line is in the widget (the view's coordinates)."""
        return QtCore.QRect(0, self.top, self.view.width(), self.view.line_height)

    def isVisible(self) -> bool:
        return self.visible

    def drawn_texts(self) -> tuple[str, ...]:
        """What each column draws at the widget's width: the full text where it fits, else its compact form, else
        the text cut with an ellipsis at its end (never a digit in half)."""
        out = [""] * len(self.texts)
        for _, _, text, i in self.view.placed(self):
            out[i] = text
        return tuple(out)


class _Header(Line):
    __slots__ = ()
    hoverable = False


class PaintedRows(QtWidgets.QWidget):
    """Lines of equal height painted by this one widget; a subclass places them (``place``: each line's ``top`` and
    ``visible``). ``line_clicked(Line)`` on a left click on a clickable line. ``header``: an optional first line in
    the muted colour, painted at the top and never refreshed."""

    line_clicked = QtCore.Signal(object)

    def __init__(self, columns: tuple[float, ...], parent: QtWidgets.QWidget | None = None, *,
                 align_left: frozenset[int] = frozenset(), header: tuple[str, ...] = ()) -> None:
        super().__init__(parent)
        self.columns = columns
        self.align_left = align_left  # columns aligned left (a time), the others right
        self.lines: list[Line] = []
        self.header: Line | None = None
        if header:
            self.header = _Header(self)
            self.header.show_values(header, (theme.current().muted,) * len(header))
        self._hover: Line | None = None
        self._faces: dict[bool, _Face] = {}  # bold or not: made for the widget's font, again when it changes
        self._cell_cache: dict[tuple, list[tuple[int, int, bool]]] = {}
        self._font_gen = 0
        self._gen = 0  # the lines' paint operations are for this size, font and hover
        self.last_painted: list[Line] = []  # the lines the last paint drew (tests: only what changed is painted)
        self._pending = True  # a paint asked for has not run yet: what is on screen is not what the lines hold
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)  # it paints its own background: Qt
        # paints no parent under it, and can scroll its pixels (shift_down)
        self.line_height = row_height(self.font())
        self.setMouseTracking(True)  # the line under the mouse is lit, a level shows the hand
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)

    # ----- geometry -----------------------------------------------------------------------------------------
    @property
    def body_top(self) -> int:
        """Where the lines start: under the header."""
        return self.line_height if self.header is not None else 0

    def place(self) -> None:
        """Set each line's ``top`` and ``visible`` for the widget's size (a subclass's layout)."""

    def bar_px(self, fraction: float) -> int:
        """A bar's width in pixels, as painted (0: none)."""
        return max(1, round(self.width() * min(1.0, fraction))) if fraction > 0 else 0

    def line_at(self, y: int) -> Line | None:
        for line in self.lines:
            if line.visible and line.top <= y < line.top + self.line_height:
                return line
        return None

    def _place_all(self) -> None:
        if self.header is not None:
            self.header.top, self.header.visible = 0, True
        self.place()

    def resizeEvent(self, event) -> None:
        self._gen += 1
        self._pending = True
        self._place_all()
        super().resizeEvent(event)

    def showEvent(self, event) -> None:
        self._pending = True
        super().showEvent(event)

    def changeEvent(self, event) -> None:
        self._pending = True
        if event.type() == QtCore.QEvent.Type.FontChange:
            self._faces, self._font_gen, self._gen = {}, self._font_gen + 1, self._gen + 1
            self.line_height = row_height(self.font())
            self.updateGeometry()
            self._place_all()
            self.update()
        super().changeEvent(event)

    # ----- refresh ------------------------------------------------------------------------------------------
    def commit(self, lines: Iterable[Line] | None = None) -> int:
        """After a refresh: one request to Qt for the rectangles of the lines that changed (contiguous lines
        merged into one band); returns how many lines changed."""
        h, w = self.line_height, self.width()
        bands: list[list[int]] = []
        changed = 0
        for line in self.lines if lines is None else lines:
            if not line.dirty:
                continue
            line.dirty = False
            changed += 1
            if not line.visible:
                continue
            if bands and bands[-1][1] == line.top:
                bands[-1][1] = line.top + h
            elif bands and bands[-1][0] == line.top + h:
                bands[-1][0] = line.top
            else:
                bands.append([line.top, line.top + h])
        if bands:
            self._pending = True
        if len(bands) == 1:
            self.update(0, bands[0][0], w, bands[0][1] - bands[0][0])
        elif bands:
            region = QtGui.QRegion()
            for top, bottom in bands:
                region += QtCore.QRect(0, top, w, bottom - top)
            self.update(region)
        return changed

    def shift_down(self, k: int, moved: Iterable[Line]) -> bool:
        """The lines' contents moved ``k`` places down (a tape: ``k`` new trades on top): Qt moves the pixels
        already painted (a copy in the window's backing store) and paints only the ``k`` lines uncovered at the
        top; ``moved`` (lines that now show exactly what the line ``k`` above them showed) need no paint. False,
        and nothing done, when what is on screen is not known to be what the lines held (a paint still due)."""
        h = self.line_height
        shown = [line for line in self.lines if line.visible]
        if self._pending or k <= 0 or k >= len(shown) or not self.isVisible():
            return False
        top, bottom = shown[0].top, shown[-1].top + h
        self.scroll(0, k * h, QtCore.QRect(0, top, self.width(), bottom - top))
        self._pending = True
        for line in moved:
            line.dirty = False
        hover = self._hover
        if hover is not None and hover in shown:  # the lit line's pixels moved down: unlit there, lit where it is
            hover.dirty = True
            below = shown.index(hover) + k
            if below < len(shown):
                shown[below].dirty = True
                shown[below]._ops = None
        return True

    # ----- paint --------------------------------------------------------------------------------------------
    def _face(self, bold: bool) -> _Face:
        face = self._faces.get(bold)
        if face is None:
            f = QtGui.QFont(self.font())
            f.setBold(bold)
            face = self._faces[bold] = _Face(f, self.line_height)
        return face

    def _cells(self, columns: tuple[float, ...]) -> list[tuple[int, int, bool]]:
        """Each column's left edge, the room for its text and whether it is aligned left, at the widget's width."""
        key = (columns, self._gen)
        cells = self._cell_cache.get(key)
        if cells is None:
            if len(self._cell_cache) > 8:
                self._cell_cache.clear()
            inner, x, cells = self.width() - 2 * PAD, PAD, []
            for i, share in enumerate(columns):
                w = round(inner * share)
                cells.append((x, w - 4, i in self.align_left))
                x += w
            self._cell_cache[key] = cells
        return cells

    def placed(self, line: Line) -> tuple[tuple[int, int, str, int], ...]:
        """Where each text of ``line`` is drawn (x, baseline, the text as it fits, its column)."""
        face = self._face(line.bold)
        widths, width_of = face.widths, face.width
        out = []
        for i, (x, room, left) in enumerate(self._cells(line.columns or self.columns)):
            text = line.texts[i]
            if not text:
                continue
            tw = widths.get(text) or width_of(text)
            if tw > room:
                if i < len(line.short) and line.short[i]:
                    text = line.short[i]
                    tw = width_of(text)
                if tw > room:
                    text = face.fm.elidedText(text, QtCore.Qt.TextElideMode.ElideRight, room)
                    tw = width_of(text)
            out.append((x if left else x + max(0, room - tw), face.baseline, text, i))
        return tuple(out)

    def _make_ops(self, line: Line, t: theme.Theme) -> tuple[tuple, tuple]:
        """The fills (x, y, width, height, colour: tint, depth bar, size bar, hover) and the texts (x, y, the text
        or its shaped form, colour) of ``line``, relative to its top; made at its first paint after a change."""
        h, w = self.line_height, self.width()
        fills = []
        if line.tint:
            fills.append((0, 0, w, h, colour(line.tint, 30)))
        if line.bar_color:
            for fraction, alpha in ((line.depth_bar, 18), (line.bar, 60)):
                if fraction > 0:
                    bw = max(1, round(w * min(1.0, fraction)))
                    fills.append((w - bw, 1, bw, h - 2, colour(line.bar_color, alpha)))
        if line is self._hover and any(line.texts):
            fills.append((0, 0, w, h, colour(t.text, 22)))
        face = self._face(line.bold)
        ascent, item, colors, default = face.ascent, face.item, line.colors, t.text
        texts = []
        for x, y, text, i in self.placed(line):
            shaped = item(text)
            # drawText places a text by its baseline, drawStaticText by its top
            texts.append((x, y if shaped.__class__ is str else y - ascent, shaped, colour(colors[i] or default)))
        line._ops, line._ops_gen = (tuple(fills), tuple(texts)), self._gen
        return line._ops

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        t = theme.current()
        rects = list(event.region())
        spans = [(r.top(), r.bottom() + 1) for r in rects]
        h, gen = self.line_height, self._gen
        p = QtGui.QPainter(self)
        background = self.palette().color(QtGui.QPalette.ColorRole.Window)  # the theme's panel colour
        for r in rects:
            p.fillRect(r, background)
        pen = None
        bold: bool | None = None
        draw_text, draw_static, fill = p.drawText, p.drawStaticText, p.fillRect
        painted = self.last_painted = []
        for line in self.lines if self.header is None else (self.header, *self.lines):
            top = line.top
            if not line.visible or not any(a < top + h and top < b for a, b in spans):
                continue
            painted.append(line)
            ops = line._ops
            if ops is None or line._ops_gen != gen:
                ops = self._make_ops(line, t)
            fills, texts = ops
            for x, y, fw, fh, c in fills:
                fill(x, top + y, fw, fh, c)
            if not texts:
                continue
            if line.bold is not bold:
                bold = line.bold
                p.setFont(self._face(bold).font)
            for x, y, item, c in texts:
                if c is not pen:
                    pen = c
                    p.setPen(c)
                if item.__class__ is str:
                    draw_text(x, top + y, item)
                else:
                    draw_static(x, top + y, item)
        p.end()
        self._pending = False

    # ----- the mouse --------------------------------------------------------------------------------------
    def _set_hover(self, line: Line | None) -> None:
        if line is not None and not line.hoverable:
            line = None
        if line is self._hover:
            return
        for old in (self._hover, line):
            if old is not None:
                old._ops = None
                if old.visible:
                    self._pending = True
                    self.update(old.geometry())
        self._hover = line
        want = QtCore.Qt.CursorShape.PointingHandCursor if line is not None and line.clickable else None
        if want is None:
            if self.testAttribute(QtCore.Qt.WidgetAttribute.WA_SetCursor):
                self.unsetCursor()
        elif self.cursor().shape() != want:
            self.setCursor(want)

    def mouseMoveEvent(self, event: QtGui.QMouseEvent) -> None:
        self._set_hover(self.line_at(int(event.position().y())))
        super().mouseMoveEvent(event)

    def leaveEvent(self, event) -> None:
        self._set_hover(None)
        super().leaveEvent(event)

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:
        if event.button() == QtCore.Qt.MouseButton.LeftButton:
            line = self.line_at(int(event.position().y()))
            if line is not None and line.clickable:
                self.line_clicked.emit(line)
                return
        super().mousePressEvent(event)

    def event(self, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.Type.ToolTip:
            line = self.line_at(event.pos().y())
            tip = line.toolTip() if line is not None else ""
            if tip:
                QtWidgets.QToolTip.showText(event.globalPos(), tip, self, line.geometry())
                return True
            QtWidgets.QToolTip.hideText()
            event.ignore()  # no tip of its own: the panel's (the tape's "what counts as big")
            return False
        return super().event(event)

