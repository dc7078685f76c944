"""Session -> Qt. Timers pull what changed; no signal per market message.

The chart is refreshed at ``ui_refresh_hz`` (redrawing only when its series' version moved); status bar, panels,
feed counters and the log view at 4 Hz, which is as fast as a person reads numbers; the performance panel at 1 Hz.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from PySide6 import QtCore

from app.perf.metrics import UI_FRAME, UI_PAINT

if TYPE_CHECKING:  # a type only: the bridge must not pull the session's modules in on its own
    from app.session import Session

SLOW_EVERY_S = 0.25
PERF_EVERY_S = 1.0  # percentiles at 1 Hz: cheap, and as fast as they change
RATE_WINDOW_S = 2.0


class PaintTimer(QtCore.QObject):
    """Times each repaint of a top-level window. Qt paints every dirty widget of a window, and flushes it to the
    screen, in one UpdateRequest event on the window, in a turn of the loop of its own after the refresh that
    changed them; so timing the refreshes alone left the paint out of the UI frame (in a real window the larger
    part: a p99 of 23-41 ms against 10-17 ms for the refreshes, at 5k msgs/s on Xvfb). The filter delivers that
    event itself, between two clock reads, and records the time into every recorder given."""

    def __init__(self, *recorders, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.recorders = list(recorders)
        self._inside = False

    def eventFilter(self, obj, event) -> bool:
        if self._inside or event.type() != QtCore.QEvent.Type.UpdateRequest:
            return False
        self._inside = True
        t0 = time.perf_counter_ns()
        try:
            obj.event(event)
        finally:
            dt = time.perf_counter_ns() - t0
            for recorder in self.recorders:
                recorder.record(dt)
            self._inside = False
        return True


class UiBridge(QtCore.QObject):
    """Three timers, each its own turn of the event loop: the chart at ``ui_refresh_hz``, the status bar and
    panels at 4 Hz, the performance panel at 1 Hz. Stacked in one callback they held the loop (and so the feed)
    for their sum; apart, the longest single hold is what the loop-lag target sees."""

    def __init__(self, session: Session, window, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.window = window
        self.frames_drawn = 0
        self._frames_hist: deque[tuple[float, int]] = deque()
        self.frame_recorder = session.metrics.recorder(UI_FRAME)  # a soak may tee it
        self.paints = PaintTimer(self.frame_recorder, session.metrics.recorder(UI_PAINT), parent=self)
        self._timers = [
            self._timer("ui-chart", 1000 / session.settings.ui_refresh_hz, self.refresh_chart),
            self._timer("ui-panels", SLOW_EVERY_S * 1000, self.refresh_panels),
            self._timer("ui-perf", PERF_EVERY_S * 1000, self.refresh_perf, timed=False),
        ]

    def _timer(self, name: str, interval_ms: float, refresh, timed: bool = True) -> QtCore.QTimer:
        timer = QtCore.QTimer(self)
        timer.setObjectName(name)  # what a profile of the loop's turns names
        timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        timer.setInterval(max(1, int(interval_ms)))
        timer.timeout.connect((lambda: self.timed(refresh)) if timed else refresh)
        return timer

    def timed(self, refresh) -> None:
        """Every UI refresh is a UI frame for the performance panel: each holds the loop for its duration."""
        t0 = time.perf_counter_ns()
        try:
            refresh()
        finally:
            self.frame_recorder.record(time.perf_counter_ns() - t0)

    def start(self) -> None:
        self.window.installEventFilter(self.paints)  # a paint is a UI frame too (PaintTimer)
        for timer in self._timers:
            timer.start()

    def stop(self) -> None:
        self.window.removeEventFilter(self.paints)
        for timer in self._timers:
            timer.stop()

    def message_rate(self) -> float:
        """Frames per second over the last couple of seconds."""
        h = self._frames_hist
        if len(h) < 2 or h[-1][0] <= h[0][0]:
            return 0.0
        return (h[-1][1] - h[0][1]) / (h[-1][0] - h[0][0])

    def tick(self) -> None:
        """Everything at once, now: for a caller that needs the window current (a test, the smoke test's end)."""
        self.timed(self.refresh_chart)
        self.timed(lambda: self.refresh_panels(spread=False))
        self.window.refresh_perf(spread=False)  # times its own steps

    def refresh_chart(self) -> None:
        w = self.window
        m = self.session.market[w.symbol]
        if w.chart.refresh(m.candles.series(w.chart.timeframe)):
            self.frames_drawn += 1

    def refresh_panels(self, spread: bool = True) -> None:
        now = time.monotonic()
        h = self._frames_hist
        h.append((now, self.session.feed.frames))
        while len(h) > 2 and now - h[0][0] > RATE_WINDOW_S:
            h.popleft()
        self.window.refresh_slow(self.message_rate(), spread=spread)

    def refresh_perf(self) -> None:
        self.window.refresh_perf()  # its steps run (and are timed) each in a turn of its own
