"""The log dock: a logging handler that buffers records, flushed into the view by the UI timer."""

from __future__ import annotations

import logging
from collections import deque

from PySide6 import QtWidgets


class BufferingHandler(logging.Handler):
    """Keeps formatted records until the UI asks for them; bounded so a log storm cannot grow memory."""

    def __init__(self, maxlen: int = 5000) -> None:
        super().__init__(level=logging.INFO)
        self.pending: deque[str] = deque(maxlen=maxlen)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append(self.format(record))
        except Exception:
            self.handleError(record)


class LogView(QtWidgets.QPlainTextEdit):
    def __init__(self, handler: BufferingHandler, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("logView")
        self.setReadOnly(True)
        self.setMaximumBlockCount(5000)
        self.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        self._handler = handler

    def flush(self) -> None:
        pending = self._handler.pending
        if not pending:
            return
        lines = list(pending)
        pending.clear()
        self.appendPlainText("\n".join(lines))
