"""Main window: the chart in the centre; decisions, orders/positions, performance and log as docks; a status bar
with the data source, feed state and message rate."""

from __future__ import annotations

import time

from PySide6 import QtCore, QtGui, QtWidgets

from app.models import FeedState
from app.session import Session
from app.trading.desk import ActionResult
from app.ui import theme
from app.ui.blotter import Blotter
from app.ui.bridge import UiBridge
from app.ui.chart.chart_widget import ChartWidget
from app.ui.decisions import DecisionsPanel
from app.ui.log_dock import BufferingHandler, LogView
from app.ui.perf_panel import PerfPanel
from app.ui.proposal_actions import ProposalActions
from app.ui.reports import show_report
from app.ui.trading_panel import TradingPanel

STATE_STYLE = {
    FeedState.LIVE: ("LIVE", "ok"),
    FeedState.CONNECTING: ("CONNECTING", "warn"),
    FeedState.RECONNECTING: ("RECONNECTING", "warn"),
    FeedState.STALE: ("STALE", "bad"),
    FeedState.STOPPED: ("STOPPED", "bad"),
}


def _placeholder(text: str) -> QtWidgets.QWidget:
    label = QtWidgets.QLabel(text)
    label.setObjectName("placeholder")
    label.setWordWrap(True)
    label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
    label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
    return label


class MainWindow(QtWidgets.QMainWindow):
    close_requested = QtCore.Signal()

    def __init__(self, session: Session, log_handler: BufferingHandler) -> None:
        super().__init__()
        self.session = session
        s = session.settings
        self.setWindowTitle(f"AI Trading Terminal — {s.symbol} — {session.source_label}")
        self.resize(1440, 900)
        self.setDockOptions(
            QtWidgets.QMainWindow.DockOption.AnimatedDocks | QtWidgets.QMainWindow.DockOption.AllowTabbedDocks
        )
        self.symbol = s.symbol  # the symbol on screen: chart, ticket, decisions
        self.chart = ChartWidget(timeframe=s.timeframe, symbols=session.symbols)
        self.chart.set_symbol(s.symbol)
        self.chart.symbol_changed.connect(self.set_symbol)
        self.setCentralWidget(self.chart)

        self.blotter = Blotter(session.desk)
        self.trading_panel = TradingPanel(session.desk, s.symbol, self.blotter)
        self.proposal_actions = ProposalActions(session.desk, self.trading_panel.show_result, self)
        self.decisions_panel = DecisionsPanel(session.decisions, s.symbol, session.desk, self.proposal_actions)
        self.decisions_dock = self._dock(
            "Decisions", self.decisions_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.orders_dock = self._dock("Orders · Positions", self.blotter, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        self.trading_dock = self._dock("Account · Ticket", self.trading_panel,
                                       QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        self.perf_panel = PerfPanel(session)
        self.perf_panel.threshold_crossed.connect(self._show_perf_badge)
        self.perf_dock = self._dock("Performance", self.perf_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self.log_view = LogView(log_handler)
        self.log_dock = self._dock("Log", self.log_view, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        self.splitDockWidget(self.orders_dock, self.trading_dock, QtCore.Qt.Orientation.Horizontal)
        self.tabifyDockWidget(self.orders_dock, self.log_dock)
        self.orders_dock.raise_()
        self.resizeDocks([self.orders_dock, self.trading_dock], [900, 340], QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks([self.decisions_dock, self.perf_dock], [380, 380], QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks([self.decisions_dock, self.perf_dock], [330, 420], QtCore.Qt.Orientation.Vertical)
        self.resizeDocks([self.orders_dock], [230], QtCore.Qt.Orientation.Vertical)

        self._build_status_bar()
        self._build_menus()
        self._started = time.monotonic()
        self._perf_refreshed = 0.0
        self.bridge = UiBridge(session, self, self)

    def _dock(self, title: str, widget: QtWidgets.QWidget, area) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title.lower().replace(" · ", "_").replace(" ", "_"))
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.source_label = QtWidgets.QLabel(self.session.source_label)
        self.source_label.setObjectName("sourceLabel")
        self.source_label.setToolTip("Where market data comes from")
        self.feed_label = QtWidgets.QLabel("● CONNECTING")
        self.feed_label.setObjectName("feedState")
        self.feed_label.setProperty("level", "warn")
        self.rate_label = QtWidgets.QLabel("0 msg/s")
        self.price_label = QtWidgets.QLabel("")
        self.price_label.setObjectName("priceLabel")
        p = self.session.provider
        self.model_status = QtWidgets.QLabel("OFFLINE RULES" if p.name == "offline" else f"MODEL {p.model}")
        self.model_status.setObjectName("sourceLabel")
        self.model_status.setToolTip(
            "Decisions come from the built-in offline rules, not a language model (no endpoint configured)"
            if p.name == "offline" else "Decisions come from this model at the configured endpoint"
        )
        sb.addWidget(self.source_label)
        sb.addWidget(self.model_status)
        self.risk_label = QtWidgets.QLabel("")
        self.risk_label.setObjectName("riskState")
        self.equity_label = QtWidgets.QLabel("")
        self.equity_label.setObjectName("priceLabel")
        self.perf_badge = QtWidgets.QLabel("")
        self.perf_badge.setObjectName("perfBadge")
        self.perf_badge.setVisible(False)
        sb.addPermanentWidget(self.perf_badge)
        sb.addPermanentWidget(self.equity_label)
        sb.addPermanentWidget(self.risk_label)
        sb.addPermanentWidget(self.price_label)
        sb.addPermanentWidget(self.rate_label)
        sb.addPermanentWidget(self.feed_label)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        view = self.menuBar().addMenu("&View")
        for dock in (self.decisions_dock, self.orders_dock, self.trading_dock, self.perf_dock, self.log_dock):
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        follow = view.addAction("Follow live edge")
        follow.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_End))
        follow.triggered.connect(lambda: self.chart.set_follow(True))
        decide = self.menuBar().addMenu("&Decisions")
        ask = decide.addAction("Ask now")
        ask.setShortcut(QtGui.QKeySequence("Ctrl+Return"))
        ask.triggered.connect(self.decisions_panel.ask_now)
        decide.addSeparator()
        # Single keys act on the newest pending proposal; text fields keep their letters (Qt gives them priority).
        for text, key, slot in (("Approve newest proposal", "A", lambda: self.proposal_actions.approve()),
                                ("Reject newest proposal", "R", lambda: self.proposal_actions.reject()),
                                ("Modify newest proposal…", "M", lambda: self.proposal_actions.modify())):
            action = decide.addAction(text)
            action.setShortcut(QtGui.QKeySequence(key))
            action.triggered.connect(slot)
        trade = self.menuBar().addMenu("&Trading")
        kill = trade.addAction("Kill switch: cancel all, flatten, halt")
        kill.setShortcut(QtGui.QKeySequence("Ctrl+Shift+K"))
        kill.triggered.connect(lambda: self.trading_panel.kill_button.click())
        flatten = trade.addAction("Flatten position")
        flatten.triggered.connect(lambda: self.trading_panel.flatten_button.click())
        trade.addSeparator()
        auto = trade.addAction("Auto-approve within its strict limits")
        auto.setCheckable(True)
        auto.setChecked(self.session.desk.proposals.auto_approve)
        auto.toggled.connect(self._set_auto_approve)
        trade.addSeparator()
        trade.addAction("Counterfactual report…").triggered.connect(
            lambda: show_report(self, self.session.journal, self.session.market, self.session.desk.portfolio.equity())
        )
        trade.addAction("Export journal to CSV").triggered.connect(self._export_csv)
        tf_menu = view.addMenu("Timeframe")
        for tf in self.chart._tf_buttons:
            tf_menu.addAction(tf).triggered.connect(lambda _=False, tf=tf: self.chart.set_timeframe(tf))

    def _show_perf_badge(self, text: str) -> None:
        self.perf_badge.setVisible(bool(text))
        self.perf_badge.setText(f"⚠ SLOW: {text.split(';')[0]}" if text else "")
        self.perf_badge.setToolTip(text)

    def set_symbol(self, symbol: str) -> None:
        if symbol not in self.session.symbols or symbol == self.symbol:
            return
        self.symbol = symbol
        self.chart.set_symbol(symbol)
        self.trading_panel.symbol = symbol
        self.decisions_panel.symbol = symbol
        self.setWindowTitle(f"AI Trading Terminal — {symbol} — {self.session.source_label}")
        self.bridge.tick()

    def _set_auto_approve(self, on: bool) -> None:
        self.session.desk.proposals.auto_approve = on
        lim = self.session.desk.proposals.auto_limits
        self.trading_panel.show_result(ActionResult(True, (
            f"auto-approve ON: confidence >= {lim.min_confidence:g}, size <= {lim.max_size_pct:g}%, "
            f"notional <= {lim.max_notional:,}; risk limits still apply") if on else "auto-approve OFF"))

    def _export_csv(self) -> None:
        folder = self.session.journal.path.parent / "export"
        try:
            paths = self.session.journal.export_csv(folder)
        except OSError as exc:
            self.trading_panel.show_result(ActionResult(False, f"export failed: {exc}"))
            return
        self.trading_panel.show_result(ActionResult(True, f"{len(paths)} CSV files written to {folder}"))

    # ----- refreshed by the bridge --------------------------------------------------------------------------
    def feed_state_text(self) -> str:
        f = self.session.feed
        text, _ = STATE_STYLE[f.state]
        if f.state is FeedState.RECONNECTING and f.reconnects:
            text = f"{text} ({f.reconnects})"
        resyncing = [s for s, b in self.session.desk.books.items() if b.has_snapshot and b.needs_resync]
        guard = self.session.kraken_books
        resyncing += sorted(guard.resyncing) if guard is not None else []
        if f.state is FeedState.LIVE and resyncing:
            text = f"{text} · RESYNCING {', '.join(resyncing)}"
        return text

    def refresh_slow(self, rate: float) -> None:
        f = self.session.feed
        text = f"● {self.feed_state_text()}"
        if self.feed_label.text() != text:
            self.feed_label.setText(text)
            self.feed_label.setProperty("level", STATE_STYLE[f.state][1])
            self.feed_label.style().unpolish(self.feed_label)
            self.feed_label.style().polish(self.feed_label)
            self.feed_label.setToolTip(f.last_error or "")
        self.rate_label.setText(f"{rate:,.0f} msg/s")
        p = self.session.decisions.provider
        model_text = "OFFLINE RULES" if p.name == "offline" else f"MODEL {p.model}"
        if self.model_status.text() != model_text:
            self.model_status.setText(model_text)
        m = self.session.market[self.symbol]
        if m.last_trade is not None:
            q = m.quote
            book = f"   bid {q.bid:,.2f} / ask {q.ask:,.2f}" if q is not None else ""
            self.price_label.setText(f"{m.symbol} {m.last_trade.price:,.2f}{book}")
        now = time.monotonic()
        if now - self._perf_refreshed >= 1.0:  # percentiles at 1 Hz: cheap, and as fast as they change
            self._perf_refreshed = now
            self.perf_panel.refresh(self.symbol, self.chart.timeframe, now - self._started)
        self.decisions_panel.refresh()
        self.blotter.refresh()
        self.trading_panel.refresh()
        desk = self.session.desk
        risk = desk.risk.state.value
        if self.risk_label.text() != f"RISK {risk}":
            self.risk_label.setText(f"RISK {risk}")
            self.risk_label.setProperty("level", {"ACTIVE": "ok", "REDUCING": "warn"}.get(risk, "bad"))
            self.risk_label.style().unpolish(self.risk_label)
            self.risk_label.style().polish(self.risk_label)
        pf = desk.portfolio
        self.equity_label.setText(f"equity {pf.equity():,.2f}  day {pf.day_pnl(desk.now_ms()):+,.2f}")
        self.chart.show_proposals(self.session.decisions.decisions, self.session.decisions.version)
        self.chart.show_position(pf.position(self.symbol), desk.bracket_levels(self.symbol), desk.fills)
        self.log_view.flush()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.bridge.stop()
        self.close_requested.emit()
        event.accept()


def apply_theme(app: QtWidgets.QApplication, name: str = "dark") -> None:
    t = theme.set_current(name)
    app.setStyle("Fusion")
    palette = QtGui.QPalette()
    for role, colour in (
        (QtGui.QPalette.ColorRole.Window, t.panel),
        (QtGui.QPalette.ColorRole.Base, t.background),
        (QtGui.QPalette.ColorRole.AlternateBase, t.panel),
        (QtGui.QPalette.ColorRole.Text, t.text),
        (QtGui.QPalette.ColorRole.WindowText, t.text),
        (QtGui.QPalette.ColorRole.Button, t.panel),
        (QtGui.QPalette.ColorRole.ButtonText, t.text),
        (QtGui.QPalette.ColorRole.Highlight, t.accent),
        (QtGui.QPalette.ColorRole.HighlightedText, t.background),
    ):
        palette.setColor(role, QtGui.QColor(colour))
    app.setPalette(palette)
    app.setStyleSheet(theme.stylesheet(t))
