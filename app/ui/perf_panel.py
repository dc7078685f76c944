"""The performance panel: p50 / p95 / p99 / max per stage (last minute or since start), coloured against thresholds;
sparklines of messages/s, loop lag and RSS; feed counters; export of a snapshot; the Python heap's top allocations
on demand. Refreshed at 1 Hz by the bridge: percentiles are computed here, never per event."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.perf import probes
from app.perf.metrics import EMPTY, STAGES, format_ns
from app.session import LOOP_LAG, Session
from app.ui import theme
from app.ui.feed_panel import FeedPanel

log = logging.getLogger(__name__)

ROWS = (LOOP_LAG, *STAGES)
# Under the stages: the loop lag split by whether the loop's thread was running (LoopLagProbe.run).
SPLIT_ROWS = (probes.LOOP_LAG_OWN, probes.LOOP_LAG_OFF_CPU)
SHORT_NAMES = {
    "exchange_to_receive": "exch→recv",
    "receive_to_bus": "recv→bus",
    "candle_update": "candles",
    "ui_frame": "UI frame",
    "model_hit": "model HIT",
    "model_similar": "model SIMILAR",
    "model_miss": "model MISS",
    "human_decision": "human decision",
    "approve_to_fill": "approve→fill",
    "tick_to_proposal": "tick→proposal",
    "proposal_to_fill": "proposal→fill",
    probes.LOOP_LAG_OWN: "loop lag, on CPU",
    probes.LOOP_LAG_OFF_CPU: "loop lag, off CPU",
}
SPLIT_TIPS = {
    probes.LOOP_LAG_OWN: "The part of each loop lag the terminal's thread was running for: the most its own work "
                         "can have caused. The SLOW badge watches this one.",
    probes.LOOP_LAG_OFF_CPU: "The part of each loop lag the terminal's thread was not running: other programs had "
                             "the CPU (or the display server, or another thread, was waited for).",
}
CALM_S = 60.0  # a crossing ends once the stage has stayed under its threshold this long (a p99 near it flaps)
WARMUP_S = 20.0  # start-up (imports, history, first paints) is not the steady state the thresholds are about
SPARK_POINTS = 120


def _spark(title: str, colour: str) -> tuple[pg.PlotWidget, pg.PlotDataItem]:
    w = pg.PlotWidget(enableMenu=False)  # no context menu to build: ~4 ms each at start-up
    w.setBackground(theme.current().background)
    w.setFixedHeight(54)
    # No axes: re-laying out tick labels every second cost more than the rest of the panel; the numbers are in
    # the label under the sparklines.
    w.hideAxis("bottom")
    w.hideAxis("left")
    w.setMouseEnabled(False, False)
    w.hideButtons()
    w.setTitle(f"<span style='font-size:8pt;color:{theme.current().muted}'>{title}</span>")
    curve = w.plot(pen=pg.mkPen(colour, width=1))
    return w, curve


class PerfPanel(QtWidgets.QWidget):
    threshold_crossed = QtCore.Signal(str)  # a short text for the status bar ("" when all is well)

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        # p99 thresholds from the settings (ms -> ns); stages without one are informational.
        self.thresholds_ns = {k: ms * 1e6 for k, ms in session.settings.perf_thresholds_ms.items()}
        self.window_name = "1m"
        # stage over its threshold -> [since, worst p99 ns, under since or None]
        self._episodes: dict[str, list] = {}
        self._rates: deque[float] = deque(maxlen=SPARK_POINTS)
        self._lags: deque[float] = deque(maxlen=SPARK_POINTS)
        self.breaches: list[str] = []
        self._over: set[str] = set()  # stages over their threshold at the last refresh
        self._snaps: dict = {}  # stage -> StageSnapshot of the last refresh, shared by its steps
        self._split: dict = {}  # the loop lag's on-CPU and off-CPU parts, likewise
        self._uptime_s = 0.0
        self._colours: dict[tuple[int, int], str] = {}
        self._sockets_at, self._socket_count = -1e9, 0
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.setSpacing(4)
        self.tabs = QtWidgets.QTabWidget()
        outer.addWidget(self.tabs)

        latency = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(latency)
        lay.setContentsMargins(0, 0, 0, 0)
        top = QtWidgets.QHBoxLayout()
        self.window_choice = QtWidgets.QComboBox()
        self.window_choice.addItems(["last 1 min", "since start"])
        self.window_choice.currentIndexChanged.connect(
            lambda i: setattr(self, "window_name", "1m" if i == 0 else "all"))
        self.export_button = QtWidgets.QPushButton("Export snapshot")
        self.export_button.clicked.connect(self.export_snapshot)
        top.addWidget(self.window_choice)
        top.addStretch(1)
        top.addWidget(self.export_button)
        lay.addLayout(top)
        self.table = QtWidgets.QTableWidget(len(ROWS) + len(SPLIT_ROWS), 6)
        self.table.setHorizontalHeaderLabels(["Stage", "p50", "p95", "p99", "max", "n"])
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(19)
        self.table.setShowGrid(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        # Fixed widths: ResizeToContents re-measured every cell on every update (~0.15 ms a cell, most of the
        # panel's refresh).
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        for col, width in enumerate((0, 56, 56, 56, 56, 46)):
            if width:
                self.table.setColumnWidth(col, width)
        self.table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for i, name in enumerate((*ROWS, *SPLIT_ROWS)):
            label = QtWidgets.QTableWidgetItem(SHORT_NAMES.get(name, name.replace("_", " ")))
            label.setToolTip(SPLIT_TIPS.get(name, name))
            self.table.setItem(i, 0, label)
            for j in range(1, 6):
                item = QtWidgets.QTableWidgetItem("—")
                item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, j, item)
        lay.addWidget(self.table, 1)
        self.status = QtWidgets.QLabel("")
        self.status.setObjectName("cardMuted")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.tabs.addTab(latency, "Latency")

        system = QtWidgets.QWidget()
        sl = QtWidgets.QVBoxLayout(system)
        sl.setContentsMargins(0, 0, 0, 0)
        t = theme.current()
        self.rate_plot, self.rate_curve = _spark("messages / s", t.accent)
        self.lag_plot, self.lag_curve = _spark("loop lag p99, ms", "#58a6ff")
        self.rss_plot, self.rss_curve = _spark("RSS, MB", t.up)
        for w in (self.rate_plot, self.lag_plot, self.rss_plot):
            sl.addWidget(w)
        self.memory_label = QtWidgets.QLabel("")
        self.memory_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.memory_label.setWordWrap(True)  # a long line would widen the whole dock
        sl.addWidget(self.memory_label)
        self.heap_button = QtWidgets.QPushButton("Show Python heap top allocations")
        self.heap_button.clicked.connect(self.show_heap)
        sl.addWidget(self.heap_button)
        self.heap_text = QtWidgets.QPlainTextEdit()
        self.heap_text.setReadOnly(True)
        self.heap_text.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.heap_text.setVisible(False)
        sl.addWidget(self.heap_text, 1)
        sl.addStretch(0)
        self.tabs.addTab(system, "System")

        self.feed_panel = FeedPanel()
        self.tabs.addTab(self.feed_panel, "Feed")

    # ----- refresh ------------------------------------------------------------------------------------------
    def refresh(self, symbol: str, timeframe: str, uptime_s: float, *, spread: bool = False,
                timed: Callable[[Callable[[], None]], None] | None = None) -> None:
        """Thresholds and the status line; then the stage table; then feed, process and sparklines. With
        ``spread`` each step is its own turn of the event loop (the 1 Hz timer uses it): together they hold the
        loop ~4-6 ms, which on its own was enough to set the loop lag's p99. ``timed`` runs a step and records
        its duration (the UI bridge's frame recorder)."""
        steps = (lambda: self._refresh_stages(uptime_s), self._refresh_table,
                 lambda: self._refresh_feed_and_process(symbol, timeframe, uptime_s))
        run = timed or (lambda step: step())
        if not spread:
            for step in steps:
                run(step)
            return
        for delay_ms, step in enumerate(steps):
            QtCore.QTimer.singleShot(delay_ms, self, lambda step=step: run(step))  # 0, 1, 2 ms: a turn each

    def _refresh_stages(self, uptime_s: float) -> None:
        s = self.session
        self._uptime_s = uptime_s
        self._snaps = snaps = {name: s.metrics.recorder(name).snapshot(self.window_name) for name in ROWS}
        self._split = self._split_snapshots()
        self.breaches = []
        self._over = set()
        for name in ROWS:
            snap = snaps[name]
            limit = self.thresholds_ns.get(name)
            if limit is None or snap.count == 0 or uptime_s < WARMUP_S:
                continue
            if snap.p99 > limit:
                self._over.add(name)
                self.breaches.append(f"{name.replace('_', ' ')} p99 {format_ns(snap.p99)}")
            self._log_crossing(name, snap.p99, limit)
        self.threshold_crossed.emit("; ".join(self.breaches))

    def _split_snapshots(self) -> dict:
        """The loop lag's on-CPU and off-CPU parts, from the session's probe (none without one)."""
        probe = getattr(self.session, "loop_lag", None)
        recorders = {probes.LOOP_LAG_OWN: getattr(probe, "own", None),
                     probes.LOOP_LAG_OFF_CPU: getattr(probe, "off_cpu", None)}
        return {name: rec.snapshot(self.window_name) for name, rec in recorders.items() if rec is not None}

    def badge_p99_ns(self) -> dict[str, float | None]:
        """Each stage's p99 (ns) at the last refresh, for the status bar's SLOW badge (``app.view.status.SlowWatch``
        decides, with its own limits and only when sustained); None for a stage without samples, or for every
        stage during the start-up grace period.

        The loop lag given is its on-CPU part: "SLOW" says the terminal is slow, and a lag during which its thread
        was not even running (a busy machine: in a real window on a shared 2-core machine most of a 50-100 ms p99
        was that) is not the terminal's to fix nor to claim. The panel shows both parts."""
        if self._uptime_s < WARMUP_S:
            return {}
        p99 = {name: snap.p99 if snap.count else None for name, snap in self._snaps.items()}
        own = self._split.get(probes.LOOP_LAG_OWN)
        if own is not None and LOOP_LAG in p99:
            p99[LOOP_LAG] = own.p99 if own.count else None
        return p99

    def _refresh_table(self) -> None:
        t = theme.current()
        snaps = {**self._snaps, **self._split}
        for i, name in enumerate((*ROWS, *SPLIT_ROWS)):
            snap = snaps.get(name, EMPTY)
            over = name in self._over
            cells = ((format_ns(snap.p50), format_ns(snap.p95), format_ns(snap.p99), format_ns(snap.max),
                      f"{snap.count:,}") if snap.count else ("—", "—", "—", "—", "0"))
            for j, text in enumerate(cells, start=1):
                item = self.table.item(i, j)
                if item.text() != text:
                    item.setText(text)
                colour = t.bad if over and j == 3 else t.text
                if self._colours.get((i, j)) != colour:  # every change repaints the table: only when needed
                    self._colours[(i, j)] = colour
                    item.setForeground(QtGui.QBrush(QtGui.QColor(colour)))

    def _refresh_feed_and_process(self, symbol: str, timeframe: str, uptime_s: float) -> None:
        s = self.session
        rate = s.feed_rate.per_second()
        self.feed_panel.update_from(s, symbol, rate, timeframe, uptime_s)
        proc = s.process.sample()
        self._rates.append(rate)
        self._lags.append(self._snaps[LOOP_LAG].p99 / 1e6)
        self.rate_curve.setData(list(self._rates))
        self.lag_curve.setData(list(self._lags))
        self.rss_curve.setData(s.process.rss_series_mb())
        self.memory_label.setText(
            f"{rate:,.0f} msg/s · loop lag p99 {self._lags[-1]:.1f} ms · RSS {proc.rss_bytes / 2**20:,.1f} MB · "
            f"CPU {proc.cpu_percent:.0f}% · threads {proc.num_threads} · sockets {self._sockets()} · "
            f"tasks {probes.task_count()}")
        cache = s.decisions.cache
        hit = f" · cache hit rate {cache.stats.hit_rate:.0%}" if cache is not None else ""
        self.status.setText(f"{rate:,.0f} msg/s · {s.feed.rejected_total:,} rejected · "
                            f"{sum(x.dropped for x in s.bus.subscriptions):,} dropped · "
                            f"{s.feed.reconnects} reconnects{hit}")

    def _sockets(self) -> int:
        """Open sockets, counted every 10 s: psutil reads /proc/net for it (~3 ms)."""
        now = time.monotonic()
        if now - self._sockets_at >= 10.0:
            self._sockets_at, self._socket_count = now, probes.open_sockets()
        return self._socket_count

    def _log_crossing(self, name: str, p99: float, limit: float) -> None:
        """Log a threshold crossing once per episode: a warning when the stage goes over, a line when it is back
        under for ``CALM_S`` (with how long it lasted and its worst p99), nothing while it stays on one side (the
        panel and the status bar show it meanwhile). A warning every window filled the log with one sentence."""
        now = time.monotonic()
        episode = self._episodes.get(name)
        if p99 > limit:
            if episode is None:
                self._episodes[name] = [now, p99, None]
                log.warning("performance: %s p99 %s is over its threshold %s", name, format_ns(p99),
                            format_ns(limit))
            else:
                episode[1], episode[2] = max(episode[1], p99), None
        elif episode is not None:
            if episode[2] is None:
                episode[2] = now
            if now - episode[2] >= CALM_S:
                del self._episodes[name]
                lasted = episode[2] - episode[0]
                log.info("performance: %s p99 %s is back under its threshold %s (over for %s, worst %s)", name,
                         format_ns(p99), format_ns(limit),
                         f"{lasted:.0f} s" if lasted < 90 else f"{lasted / 60:.1f} min", format_ns(episode[1]))

    # ----- actions ------------------------------------------------------------------------------------------
    def export_snapshot(self) -> list[Path]:
        folder = self.session.journal.path.parent / "perf"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        snap = self.session.metrics.snapshot_all()
        paths = [folder / f"perf-{stamp}.json", folder / f"perf-{stamp}.csv"]
        self.session.metrics.export_json(paths[0], snap)
        self.session.metrics.export_csv(paths[1], snap)
        self.status.setText(f"snapshot written: {paths[0]} and .csv")
        log.info("performance snapshot written to %s", paths[0])
        return paths

    def show_heap(self) -> None:
        if not probes.tracemalloc_running():
            probes.start_tracemalloc()
            self.heap_text.setVisible(True)
            self.heap_text.setPlainText("tracemalloc started: allocations from now on are traced. Click again.")
            self.heap_button.setText("Refresh heap top allocations")
            return
        rows = probes.top_allocations(15)
        self.heap_text.setPlainText("\n".join(f"{kb:10.1f} KB {count:8d}  {where}" for where, kb, count in rows))
