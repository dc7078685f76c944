"""Session -> Qt. One refresh timer pulls what changed; no signal per market message.

The chart is refreshed at ``ui_refresh_hz`` (redrawing only when its series' version moved); status bar, feed
counters and the log view at about 4 Hz, which is as fast as a person reads numbers.
"""

from __future__ import annotations

import time
from collections import deque

from PySide6 import QtCore

from app.perf.metrics import UI_FRAME
from app.session import Session

SLOW_EVERY_S = 0.25
RATE_WINDOW_S = 2.0


class UiBridge(QtCore.QObject):
    def __init__(self, session: Session, window, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.window = window
        self.frames_drawn = 0
        self._last_slow = 0.0
        self._frames_hist: deque[tuple[float, int]] = deque()
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.setInterval(max(1, int(1000 / session.settings.ui_refresh_hz)))
        self._timer.timeout.connect(self.tick)
        self._frame = session.metrics.recorder(UI_FRAME)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def message_rate(self) -> float:
        """Frames per second over the last couple of seconds."""
        h = self._frames_hist
        if len(h) < 2 or h[-1][0] <= h[0][0]:
            return 0.0
        return (h[-1][1] - h[0][1]) / (h[-1][0] - h[0][0])

    def tick(self) -> None:
        t0 = time.perf_counter_ns()
        try:
            self._tick()
        finally:
            self._frame.record(time.perf_counter_ns() - t0)

    def _tick(self) -> None:
        w = self.window
        m = self.session.market[w.symbol]
        if w.chart.refresh(m.candles.series(w.chart.timeframe)):
            self.frames_drawn += 1
        now = time.monotonic()
        if now - self._last_slow >= SLOW_EVERY_S:
            self._last_slow = now
            h = self._frames_hist
            h.append((now, self.session.feed.frames))
            while len(h) > 2 and now - h[0][0] > RATE_WINDOW_S:
                h.popleft()
            w.refresh_slow(self.message_rate())
