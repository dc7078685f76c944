"""Main window: the chart in the centre; decisions, orders/positions, performance and log as docks; a status bar
with the data source, feed state and message rate."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from app.llm.local import provider_label, provider_tooltip
from app.models import FeedState
from app.session import Session
from app.trading.desk import ActionResult
from app.ui import live_status, theme
from app.ui.bridge import UiBridge
from app.ui.chart.chart_widget import ChartWidget
from app.ui.log_dock import BufferingHandler

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from app.ui.blotter import Blotter
    from app.ui.decisions import DecisionsPanel
    from app.ui.log_dock import LogView
    from app.ui.perf_panel import PerfPanel
    from app.ui.proposal_actions import ProposalActions
    from app.ui.trading_panel import TradingPanel

PERF_MIN_HEIGHT = 140
UI_STATE_VERSION = 2  # bump when the docks change so an old saved layout is ignored rather than misapplied

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

    def __init__(self, session: Session, log_handler: BufferingHandler, *, build_panels: bool = True,
                 ui_state: QtCore.QSettings | None = None, restore_view: bool = True,
                 config_path: Path | None = None) -> None:
        """``build_panels=False`` shows the chart, menus, status bar and empty dock frames only; the caller runs
        ``build_panels()`` after the first paint, so the window appears before its side panels are built.
        ``ui_state`` keeps dock layout, geometry, symbol and timeframe between runs (None: nothing persisted);
        ``restore_view=False`` keeps the symbol and timeframe the command line chose. ``config_path`` is the
        settings file File > Settings edits (None: the menu item is disabled)."""
        super().__init__()
        self.session = session
        self._log_handler = log_handler
        self._ui_state = ui_state
        self.config_path = config_path
        self._dialogs: dict[str, QtWidgets.QDialog] = {}  # non-modal dialogs kept alive while open
        s = session.settings
        self.setWindowTitle(self._title(s.symbol))
        self.resize(1440, 900)
        self.setDockOptions(
            QtWidgets.QMainWindow.DockOption.AnimatedDocks | QtWidgets.QMainWindow.DockOption.AllowTabbedDocks
        )
        self.symbol = s.symbol  # the symbol on screen: chart, ticket, decisions
        self.chart = ChartWidget(timeframe=s.timeframe, symbols=session.symbols)
        self.chart.set_symbol(s.symbol)
        self.chart.symbol_changed.connect(self.set_symbol)
        self.setCentralWidget(self.chart)

        right, bottom = QtCore.Qt.DockWidgetArea.RightDockWidgetArea, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea
        self.decisions_dock = self._dock("Decisions", right)
        self.orders_dock = self._dock("Orders · Positions", bottom)
        self.trading_dock = self._dock("Account · Ticket", bottom)
        self.perf_dock = self._dock("Performance", right)
        self.log_dock = self._dock("Log", bottom)
        self.splitDockWidget(self.orders_dock, self.trading_dock, QtCore.Qt.Orientation.Horizontal)
        self.tabifyDockWidget(self.orders_dock, self.log_dock)
        self.orders_dock.raise_()
        # The Decisions dock is what the trader acts from: the right column runs the window's full height (the
        # bottom docks stay under the chart) and most of it is the Decisions dock's: pending proposals and one line
        # per symbol are visible without scrolling; the performance panel keeps the rest.
        self.setCorner(QtCore.Qt.Corner.BottomRightCorner, right)
        self.setCorner(QtCore.Qt.Corner.TopRightCorner, right)
        self._default_dock_sizes()

        self._build_status_bar()
        self._build_menus()
        self._started = time.monotonic()
        self.panels_built = False
        self.bridge = UiBridge(session, self, self)
        self._restore_ui_state(restore_view)
        self._fit_to_screen()
        if build_panels:
            self.build_panels()

    def build_panels(self) -> None:
        """The side panels, into the dock frames made by __init__ (about half of the window's construction)."""
        if self.panels_built:
            return
        # Imported here, not at the top: defining the table models makes PySide6 build ~100 Qt enums (~15 ms),
        # which need not delay the first paint.
        from app.ui.blotter import Blotter
        from app.ui.decisions import DecisionsPanel
        from app.ui.log_dock import LogView
        from app.ui.perf_panel import PerfPanel
        from app.ui.proposal_actions import ProposalActions
        from app.ui.trading_panel import TradingPanel

        session = self.session
        self.blotter: Blotter = Blotter(session.desk)
        self.trading_panel: TradingPanel = TradingPanel(session.desk, self.symbol, self.blotter,
                                                        mode_text=session.broker_label)
        # A / R / M act on what the Decisions dock highlights: the symbol on screen's proposal, else the selected one.
        self.proposal_actions: ProposalActions = ProposalActions(
            session.desk, self.trading_panel.show_result, self, target=lambda: self.decisions_panel.target())
        self.decisions_panel: DecisionsPanel = DecisionsPanel(session.decisions, self.symbol, session.desk,
                                                              self.proposal_actions)
        self.decisions_panel.symbol_chosen.connect(self.set_symbol)
        self.decisions_panel.proposal_arrived.connect(self._announce_proposal)
        self.perf_panel: PerfPanel = PerfPanel(session)
        self.perf_panel.threshold_crossed.connect(self._show_perf_badge)
        self.log_view: LogView = LogView(self._log_handler)
        for dock, widget in ((self.decisions_dock, self.decisions_panel), (self.orders_dock, self.blotter),
                             (self.trading_dock, self.trading_panel), (self.perf_dock, self.perf_panel),
                             (self.log_dock, self.log_view)):
            old = dock.widget()
            dock.setWidget(widget)
            if old is not None:
                old.deleteLater()
        # The performance table scrolls: on a small screen its dock may shrink so the Decisions dock keeps its room.
        self.perf_panel.setMinimumHeight(PERF_MIN_HEIGHT)
        if not self._layout_restored:  # the real panels' sizes are known now: the default proportions again
            self._default_dock_sizes()
        self.panels_built = True

    def _default_dock_sizes(self) -> None:
        self.resizeDocks([self.orders_dock, self.trading_dock], [700, 340], QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks([self.decisions_dock, self.perf_dock], [440, 440], QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks([self.decisions_dock, self.perf_dock], [700, 230], QtCore.Qt.Orientation.Vertical)
        self.resizeDocks([self.orders_dock], [230], QtCore.Qt.Orientation.Vertical)

    def _dock(self, title: str, area) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title.lower().replace(" · ", "_").replace(" ", "_"))
        dock.setWidget(_placeholder(""))
        self.addDockWidget(area, dock)
        return dock

    def _fit_to_screen(self) -> None:
        """A window larger than the screen's work area (1440x900 on a 1280x720 screen, or a layout saved on a
        bigger monitor) would leave the status bar (LIVE, prices) and the docks' right edge off-screen, and a window
        manager does not shrink it: open it maximized instead. Offscreen there is no screen to fit (its 800x800
        is a placeholder): screenshots and tests keep the window's own size."""
        screen = self.screen() or QtGui.QGuiApplication.primaryScreen()
        if screen is None or QtGui.QGuiApplication.platformName() in ("offscreen", "minimal"):
            return
        if should_maximize(self.size(), screen.availableGeometry()):
            self.setWindowState(self.windowState() | QtCore.Qt.WindowState.WindowMaximized)

    # ----- window state between runs (QSettings) ------------------------------------------------------------
    def _restore_ui_state(self, restore_view: bool) -> None:
        self._layout_restored = False
        st = self._ui_state
        if st is None:
            return
        geometry, state = st.value("window/geometry"), st.value("window/state")
        if isinstance(geometry, QtCore.QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QtCore.QByteArray):
            self._layout_restored = self.restoreState(state, UI_STATE_VERSION)
        if not restore_view:
            return
        symbol, timeframe = st.value("view/symbol"), st.value("view/timeframe")
        if isinstance(symbol, str) and symbol in self.session.symbols:
            self.set_symbol(symbol)
        if isinstance(timeframe, str) and timeframe in self.chart._tf_buttons:
            self.chart.set_timeframe(timeframe)

    def save_ui_state(self) -> None:
        st = self._ui_state
        if st is None:
            return
        st.setValue("window/geometry", self.saveGeometry())
        st.setValue("window/state", self.saveState(UI_STATE_VERSION))
        st.setValue("view/symbol", self.symbol)
        st.setValue("view/timeframe", self.chart.timeframe)
        st.sync()

    def _title(self, symbol: str) -> str:
        return f"AI Trading Terminal — {symbol} — {self.session.source_label} — {self.session.broker_label}"

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        # Where orders go, first on the left: LIVE in red (an exchange account), PAPER calm.
        session = self.session
        self.mode_label = QtWidgets.QLabel(session.broker_label)
        self.mode_label.setObjectName("brokerMode")
        self.mode_label.setProperty("mode", "LIVE" if session.is_live else "PAPER")
        self.mode_label.setToolTip(self._mode_tooltip())
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
        self.model_status = QtWidgets.QLabel(provider_label(p))
        self.model_status.setObjectName("sourceLabel")
        self.model_status.setToolTip(provider_tooltip(p, self.session.model_fallback))
        self.pending_label = QtWidgets.QLabel("")
        self.pending_label.setObjectName("pendingCount")
        self.pending_label.setToolTip("Proposals waiting for you in the Decisions dock")
        self.pending_label.setVisible(False)
        # Live only, red beside the label: orders sent with nobody confirming each; fills not arriving.
        self.auto_label = live_status.auto_badge()
        self.stream_label = live_status.stream_label()
        sb.addWidget(self.mode_label)
        sb.addWidget(self.auto_label)
        sb.addWidget(self.stream_label)
        sb.addWidget(self.source_label)
        sb.addWidget(self.model_status)
        sb.addWidget(self.pending_label)
        self.risk_label = QtWidgets.QLabel("")
        self.risk_label.setObjectName("riskState")
        self.equity_label = QtWidgets.QLabel("")
        self.equity_label.setObjectName("priceLabel")
        self.perf_badge = QtWidgets.QLabel("")
        self.perf_badge.setObjectName("perfBadge")
        self.perf_badge.setVisible(False)
        # Red, naming the part that failed: the terminal never runs half-dead without saying so.
        self.fault_label = QtWidgets.QLabel("")
        self.fault_label.setObjectName("feedState")
        self.fault_label.setProperty("level", "bad")
        self.fault_label.setVisible(False)
        self._fault_shown: tuple[str, str, str] | None = None  # (text, level, tooltip) on the label now
        sb.addPermanentWidget(self.fault_label)
        sb.addPermanentWidget(self.perf_badge)
        sb.addPermanentWidget(self.equity_label)
        sb.addPermanentWidget(self.risk_label)
        sb.addPermanentWidget(self.price_label)
        sb.addPermanentWidget(self.rate_label)
        sb.addPermanentWidget(self.feed_label)

    def _mode_tooltip(self) -> str:
        session = self.session
        live = session.live
        if session.is_live and live is not None and live.account is not None:
            return (f"Orders go to {session.broker_label.removeprefix('LIVE · ')}, account {live.account.account}. "
                    f"Journal: {session.journal.path.name}")
        why = f" Live trading was asked for: {live.reason}" if live is not None and live.reason else ""
        return f"Orders are filled on paper against the live market (no exchange account).{why}"

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        settings_action = file_menu.addAction("&Settings…")
        settings_action.setShortcut(QtGui.QKeySequence("Ctrl+,"))
        settings_action.setEnabled(self.config_path is not None)
        settings_action.triggered.connect(self.open_settings)
        file_menu.addAction("Open &log folder").triggered.connect(self._open_log_folder)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        view = self.menuBar().addMenu("&View")
        for dock in (self.decisions_dock, self.orders_dock, self.trading_dock, self.perf_dock, self.log_dock):
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        # End itself belongs to the chart's own shortcut; a second binding here would make both ambiguous (and
        # Qt then fires neither). The tab shows the key in the menu without binding it.
        follow = view.addAction("Follow live edge\tEnd")
        follow.triggered.connect(lambda: self.chart.set_follow(True))
        decide = self.menuBar().addMenu("&Decisions")
        ask = decide.addAction("Ask now")
        ask.setShortcut(QtGui.QKeySequence("Ctrl+Return"))
        ask.triggered.connect(lambda: self.panels_built and self.decisions_panel.ask_now())
        decide.addSeparator()
        # Single keys act on the proposal the Decisions dock highlights (the symbol on screen's newest, else the
        # clicked card), never another symbol's; text fields keep their letters (Qt gives them priority).
        for text, key, act in (("Approve highlighted proposal", "A", "approve"),
                               ("Reject highlighted proposal", "R", "reject"),
                               ("Modify highlighted proposal…", "M", "modify")):
            action = decide.addAction(text)
            action.setShortcut(QtGui.QKeySequence(key))
            action.triggered.connect(lambda _=False, act=act: self._on_proposal_key(act))
        trade = self.menuBar().addMenu("&Trading")
        kill = trade.addAction("Kill switch: cancel all, flatten, halt")
        kill.setShortcut(QtGui.QKeySequence("Ctrl+Shift+K"))
        kill.triggered.connect(lambda: self.panels_built and self.trading_panel.kill_button.click())
        flatten = trade.addAction("Flatten position")
        flatten.triggered.connect(lambda: self.panels_built and self.trading_panel.flatten_button.click())
        trade.addSeparator()
        auto = self.auto_action = trade.addAction("Auto-approve within its strict limits")
        auto.setCheckable(True)
        auto.setChecked(self.session.desk.proposals.auto_approve)
        auto.toggled.connect(self._set_auto_approve)
        self._show_auto_approve()
        trade.addSeparator()
        trade.addAction("Counterfactual report…").triggered.connect(self._show_report)
        trade.addAction("Export journal to CSV").triggered.connect(self._export_csv)
        tf_menu = view.addMenu("Timeframe")
        for tf in self.chart._tf_buttons:
            tf_menu.addAction(tf).triggered.connect(lambda _=False, tf=tf: self.chart.set_timeframe(tf))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("&About AI Trading Terminal").triggered.connect(self.open_about)

    # ----- dialogs ------------------------------------------------------------------------------------------
    def _keep(self, name: str, dialog: QtWidgets.QDialog, modal: bool = True) -> QtWidgets.QDialog:
        """Keep a dialog alive while it is open. Never exec(): the event loop (and the feed) keeps running."""
        self._dialogs[name] = dialog
        dialog.finished.connect(lambda _=0: self._dialogs.pop(name, None))
        if modal:
            dialog.open()  # window-modal
        else:
            dialog.setModal(False)
            dialog.show()
        return dialog

    def open_settings(self) -> QtWidgets.QDialog | None:
        """The settings dialog on the file's settings (not this run's, which may include command-line flags)."""
        if self.config_path is None:
            return None
        if "settings" in self._dialogs:
            self._dialogs["settings"].raise_()
            return self._dialogs["settings"]
        from app.secrets import Secrets
        from app.settings_store import load_settings
        from app.ui.settings_dialog import SettingsDialog

        loaded = load_settings(self.config_path, backup=False)
        dialog = SettingsDialog(loaded.settings, self.config_path, Secrets(), self,
                                mode_text=self.session.broker_label)
        dialog.key_saved.connect(self.session.apply_model_key)  # a new key applies at once
        return self._keep("settings", dialog)

    def open_about(self) -> QtWidgets.QDialog:
        from app.ui.about import AboutDialog

        return self._keep("about", AboutDialog(self, journal_path=self.session.journal.path,
                                               decisions=self.model_status.text(),
                                               decisions_note=self.model_status.toolTip()))

    def _open_log_folder(self) -> None:
        from app.logs import log_dir

        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(folder)))

    def show_settings_problems(self, problems: list[str]) -> QtWidgets.QMessageBox | None:
        """What was wrong with the settings file, once the window is up: which keys fell back to defaults."""
        if not problems:
            return None
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, "Settings file problems",
                                    "The terminal started with defaults for these settings:",
                                    QtWidgets.QMessageBox.StandardButton.Ok, self)
        box.setInformativeText("\n".join(problems))
        box.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        return self._keep("settings problems", box, modal=False)

    def _show_report(self) -> None:
        from app.ui.reports import show_report

        show_report(self, self.session.journal, self.session.market, self.session.desk.portfolio.equity())

    def _on_proposal_key(self, act: str) -> None:
        if self.panels_built:
            getattr(self.proposal_actions, act)()

    def _announce_proposal(self, proposal_id: str) -> None:
        """A new proposal: the dock title lights up briefly (the card does too), the optional sound, the count."""
        self._flash_dock(True)
        QtCore.QTimer.singleShot(theme.FLASH_MS, self, lambda: self._flash_dock(False))
        if getattr(self.session.settings, "sound_on_proposal", False):
            QtWidgets.QApplication.beep()
        self._show_pending_count()

    def _flash_dock(self, on: bool) -> None:
        dock = self.decisions_dock
        if dock.property("flash") != on:
            dock.setProperty("flash", on)
            dock.style().unpolish(dock)
            dock.style().polish(dock)

    def _show_pending_count(self) -> None:
        n = len(self.session.desk.proposals.pending())
        text = f"{n} pending" if n else ""
        if self.pending_label.text() != text:
            self.pending_label.setText(text)
            self.pending_label.setVisible(bool(n))

    def _show_perf_badge(self, text: str) -> None:
        self.perf_badge.setVisible(bool(text))
        self.perf_badge.setText(f"⚠ SLOW: {text.split(';')[0]}" if text else "")
        self.perf_badge.setToolTip(text)

    def set_symbol(self, symbol: str) -> None:
        if symbol not in self.session.symbols or symbol == self.symbol:
            return
        self.symbol = symbol
        self.chart.set_symbol(symbol)
        self.setWindowTitle(self._title(symbol))
        if self.panels_built:
            self.trading_panel.symbol = symbol
            self.decisions_panel.symbol = symbol
            self.bridge.tick()

    def _auto_limits_text(self) -> str:
        lim = self.session.desk.proposals.auto_limits
        return (f"auto-approve ON: confidence >= {lim.min_confidence:g}, order value <= {lim.max_order_value:,} "
                "(larger proposals are scaled down to it); risk limits still apply")

    def _set_auto_approve(self, on: bool) -> None:
        """The Trading menu's toggle. Live: turning it on asks first (the menu stays unchecked until Yes)."""
        if on and self.session.is_live and not self.session.desk.proposals.auto_approve:
            self._check_auto(False)
            box = live_status.ask_auto_approve(self, self.session.broker_label, self._auto_limits_text())
            box.finished.connect(lambda _r: box.clickedButton() is box.yes_button and self._apply_auto_approve(True))
            self._keep("auto approve", box)
            return
        self._apply_auto_approve(on)

    def _apply_auto_approve(self, on: bool) -> None:
        self.session.desk.proposals.auto_approve = on
        log.warning("auto-approve %s (%s)", "ON" if on else "OFF", self.session.broker_label)
        self._check_auto(on)
        self._show_auto_approve()
        if self.panels_built:
            self.trading_panel.show_result(ActionResult(True, self._auto_limits_text() if on else "auto-approve OFF"))

    def _check_auto(self, on: bool) -> None:
        self.auto_action.blockSignals(True)
        self.auto_action.setChecked(on)
        self.auto_action.blockSignals(False)

    def _show_auto_approve(self) -> None:
        self.auto_label.setVisible(self.session.is_live and self.session.desk.proposals.auto_approve)

    def _show_stream(self) -> None:
        text = live_status.stream_text(self.session.user_stream_down_s())
        if self.stream_label.text() != text:
            self.stream_label.setText(text)
            self.stream_label.setVisible(bool(text))

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
        resyncing = [s for s, b in self.session.desk.books.items() if b.status == "RESYNCING"]
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
        self._show_faults()
        self._show_stream()
        p = self.session.decisions.provider
        model_text = provider_label(p)
        if self.model_status.text() != model_text:
            self.model_status.setText(model_text)
            self.model_status.setToolTip(provider_tooltip(p, self.session.model_fallback))
        m = self.session.market[self.symbol]
        if m.last_trade is not None:
            q = m.quote
            inst = self.session.desk.instruments.get(m.symbol)  # XRP at 0.6012, not 0.60
            book = f"   bid {inst.fmt_price(q.bid)} / ask {inst.fmt_price(q.ask)}" if q is not None else ""
            self.price_label.setText(f"{m.symbol} {inst.fmt_price(m.last_trade.price)}{book}")
        if not self.panels_built:
            return
        self.decisions_panel.refresh()
        self._show_pending_count()
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
        self.chart.set_instrument(desk.instruments.get(self.symbol))
        self.chart.show_proposals(self.session.decisions.decisions, self.session.decisions.version)
        self.chart.show_position(pf.position(self.symbol), desk.bracket_levels(self.symbol), desk.fills)
        self.log_view.flush()

    def _show_faults(self) -> None:
        # Red while a part is down or stopped, amber for a while after it runs again, then gone; short text
        # (it shares the status bar with the prices), the details in the tooltip. Time-dependent: checked each tick.
        status = self.session.supervisor.status()
        shown = None if status is None else (status.text, status.level, status.tooltip)
        if shown == self._fault_shown:
            return
        self._fault_shown = shown
        self.fault_label.setVisible(status is not None)
        if status is None:
            return
        self.fault_label.setText(status.text)
        self.fault_label.setToolTip(status.tooltip)
        self.fault_label.setProperty("level", status.level)
        self.fault_label.style().unpolish(self.fault_label)
        self.fault_label.style().polish(self.fault_label)

    def refresh_perf(self, spread: bool = True) -> None:
        """``spread``: the panel's steps in separate turns of the loop (the timer); False: all now."""
        if self.panels_built:
            self.perf_panel.refresh(self.symbol, self.chart.timeframe, time.monotonic() - self._started,
                                    spread=spread, timed=self.bridge.timed)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.bridge.stop()
        self.save_ui_state()
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


# Room for the window manager's title bar and borders, which QWidget.size() does not include.
FRAME_ALLOWANCE = QtCore.QSize(16, 48)


def should_maximize(size: QtCore.QSize, available: QtCore.QRect) -> bool:
    """Whether a window of ``size`` (its client area) would not fit in ``available`` (a screen's work area)."""
    return (size.width() + FRAME_ALLOWANCE.width() > available.width()
            or size.height() + FRAME_ALLOWANCE.height() > available.height())
