"""The log dock: a logging handler that buffers records, flushed into the view by the UI timer.

The view keeps the most recent records with their levels, so changing the level or the text filter re-renders
what was already shown; both the handler's buffer and the view's history are bounded."""

from __future__ import annotations

import logging
from collections import deque

from PySide6 import QtCore, QtWidgets

LEVELS: tuple[tuple[str, int], ...] = (
    ("DEBUG", logging.DEBUG), ("INFO", logging.INFO), ("WARNING", logging.WARNING), ("ERROR", logging.ERROR),
)
DEFAULT_LEVEL = logging.INFO


class BufferingHandler(logging.Handler):
    """Keeps (level, formatted line) pairs until the UI asks for them; bounded so a log storm cannot grow memory.

    Its own level is NOTSET: it takes whatever the root logger passes (DEBUG only with ``-v``); the view filters."""

    def __init__(self, maxlen: int = 5000) -> None:
        super().__init__(level=logging.NOTSET)
        self.pending: deque[tuple[int, str]] = deque(maxlen=maxlen)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append((record.levelno, self.format(record)))
        except Exception:
            self.handleError(record)

    def take(self) -> list[tuple[int, str]]:
        """Everything buffered so far, oldest first (safe against records arriving from other threads meanwhile)."""
        out = []
        pending = self.pending
        while pending:
            try:
                out.append(pending.popleft())
            except IndexError:
                break
        return out


class LogView(QtWidgets.QWidget):
    """A level combo, a text filter and a read-only text view of the last ``history`` records."""

    def __init__(self, handler: BufferingHandler, parent: QtWidgets.QWidget | None = None,
                 history: int = 5000) -> None:
        super().__init__(parent)
        self.setObjectName("logDockView")
        self._handler = handler
        self._records: deque[tuple[int, str]] = deque(maxlen=history)

        self.level_combo = QtWidgets.QComboBox()
        self.level_combo.setObjectName("logLevel")
        self.level_combo.setToolTip("Show records at this level and above")
        for name, level in LEVELS:
            self.level_combo.addItem(name, level)
        self.level_combo.setCurrentIndex([lv for _, lv in LEVELS].index(DEFAULT_LEVEL))
        self.filter_edit = QtWidgets.QLineEdit()
        self.filter_edit.setObjectName("logFilter")
        self.filter_edit.setPlaceholderText("Filter text")
        self.filter_edit.setClearButtonEnabled(True)
        clear = QtWidgets.QPushButton("Clear")
        clear.setToolTip("Clear the log view (the log file keeps everything)")
        clear.clicked.connect(self.clear)

        self.text = QtWidgets.QPlainTextEdit()
        self.text.setObjectName("logView")
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(history)
        self.text.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)

        bar = QtWidgets.QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(QtWidgets.QLabel("Level"))
        bar.addWidget(self.level_combo)
        bar.addWidget(self.filter_edit, 1)
        bar.addWidget(clear)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(self.text, 1)

        self.level_combo.currentIndexChanged.connect(self._rerender)
        self.filter_edit.textChanged.connect(self._rerender)
        # Follow the newest line unless the trader scrolled up to read: new lines (and a view laid out again)
        # keep the bottom in view only while it was at the bottom.
        self.following = True
        bar = self.text.verticalScrollBar()
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(self._range_changed)

    def _scrolled(self, value: int) -> None:
        if self.isVisible():  # a hidden view's range is not the trader's doing
            self.following = value >= self.text.verticalScrollBar().maximum()

    def _range_changed(self, _minimum: int, maximum: int) -> None:
        if self.following:
            self.text.verticalScrollBar().setValue(maximum)

    def scroll_to_newest(self) -> None:
        self.following = True
        bar = self.text.verticalScrollBar()
        bar.setValue(bar.maximum())

    def showEvent(self, event) -> None:
        """Opened (its tab chosen, its dock shown): the newest line, after the view has its size."""
        super().showEvent(event)
        self.scroll_to_newest()
        QtCore.QTimer.singleShot(0, self, self.scroll_to_newest)

    @property
    def level(self) -> int:
        return int(self.level_combo.currentData())

    def set_level(self, level: int) -> None:
        self.level_combo.setCurrentIndex(max(0, self.level_combo.findData(level)))

    def _shown(self, record: tuple[int, str], level: int, needle: str) -> bool:
        return record[0] >= level and (not needle or needle in record[1].lower())

    def flush(self) -> None:
        new = self._handler.take()
        if not new:
            return
        self._records.extend(new)
        level, needle = self.level, self.filter_edit.text().strip().lower()
        lines = [line for lv, line in new if self._shown((lv, line), level, needle)]
        if lines:
            self.text.appendPlainText("\n".join(lines))

    def _rerender(self, *_: object) -> None:
        level, needle = self.level, self.filter_edit.text().strip().lower()
        self.text.setPlainText("\n".join(line for lv, line in self._records if self._shown((lv, line), level, needle)))
        self.scroll_to_newest()

    def clear(self) -> None:
        self._handler.take()
        self._records.clear()
        self.text.clear()

    def visible_text(self) -> str:
        return self.text.toPlainText()
