"""Main window: the chart in the centre; decisions, orders/positions, performance and log as docks; a status bar
with the data source, feed state and message rate.

Start-up shows the window before anything heavy exists: the frame (chart, menus, status bar, empty docks) needs only
the settings, so this module imports nothing of the session (trading, journal, decisions, feed), and ``app.__main__``
makes the session after the first paint and hands it over with ``attach_session``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from app.ui import live_status, theme
from app.ui.chart.chart_widget import ChartWidget
from app.ui.log_dock import BufferingHandler
from app.ui.status_bar import StatusStrip
from app.view.status import (
    RANK_EQUITY,
    RANK_FAULT,
    RANK_FEED,
    RANK_MODE,
    RANK_PENDING,
    RANK_PRICES,
    RANK_RATE,
    RANK_RISK,
    RANK_SLOW,
    SlowWatch,
    StatusItem,
    StatusView,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from app.config import Settings
    from app.session import Session
    from app.ui.blotter import Blotter
    from app.ui.bridge import UiBridge
    from app.ui.decisions import DecisionsPanel
    from app.ui.log_dock import LogView
    from app.ui.perf_panel import PerfPanel
    from app.ui.proposal_actions import ProposalActions
    from app.ui.trading_panel import TradingPanel
    from app.view.model import ViewModel

STARTING = "starting…"  # what the status bar and title say until the session exists
PERF_MIN_HEIGHT = 140
RENDER_LOG_EVERY_S = 60.0  # a panel that keeps failing is logged once a minute, counted every time
UI_STATE_VERSION = 3  # bump when the docks change so an old saved layout is ignored rather than misapplied



def _placeholder(text: str) -> QtWidgets.QWidget:
    label = QtWidgets.QLabel(text)
    label.setObjectName("placeholder")
    label.setWordWrap(True)
    label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
    label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
    return label


class MainWindow(QtWidgets.QMainWindow):
    close_requested = QtCore.Signal()
    session: Session  # set by attach_session
    bridge: UiBridge  # made by attach_session: the timers that refresh the window from the session

    def __init__(self, session: Session | None, log_handler: BufferingHandler, *, settings: Settings | None = None,
                 build_panels: bool = True, ui_state: QtCore.QSettings | None = None, restore_view: bool = True,
                 config_path: Path | None = None, flag_overrides: dict[str, str] | None = None) -> None:
        """``session=None`` (then ``settings`` is required) makes the frame from the settings alone, saying
        "starting…"; ``attach_session()`` completes it once the session exists. ``build_panels=False`` shows the
        chart, menus, status bar and empty dock frames only; the caller runs ``build_panels()`` after the first
        paint (and after ``attach_session``), so the window appears before its side panels are built.
        ``ui_state`` keeps dock layout, geometry, symbol and timeframe between runs (None: nothing persisted);
        ``restore_view=False`` keeps the symbol and timeframe the command line chose. ``config_path`` is the
        settings file File > Settings edits (None: the menu item is disabled); ``flag_overrides``: the settings this
        run's command-line flags override (field -> "--model gpt-4o"), named by the settings dialog."""
        super().__init__()
        if session is None and settings is None:
            raise TypeError("MainWindow needs a session or, to show its frame before the session exists, settings")
        s = session.settings if session is not None else settings
        assert s is not None
        self.settings = s
        self.symbols: list[str] = list(s.feed_symbols())  # what the session streams (Session.symbols)
        self.attached = False
        self.render_failures: dict[str, int] = {}  # panel -> refreshes that raised (logged once a minute)
        self._render_logged: dict[str, float] = {}
        self._log_handler = log_handler
        self._ui_state = ui_state
        self.config_path = config_path
        self.flag_overrides = dict(flag_overrides or {})
        self._dialogs: dict[str, QtWidgets.QDialog] = {}  # non-modal dialogs kept alive while open
        self.setWindowTitle(self._title(s.symbol))
        self.resize(1440, 900)
        self.setDockOptions(
            QtWidgets.QMainWindow.DockOption.AnimatedDocks | QtWidgets.QMainWindow.DockOption.AllowTabbedDocks
        )
        self.symbol = s.symbol  # the symbol on screen: chart, ticket, decisions
        self.chart = ChartWidget(timeframe=s.timeframe, symbols=self.symbols)
        self.chart.set_symbol(s.symbol)
        self.chart.symbol_changed.connect(self.set_symbol)
        self.setCentralWidget(self.chart)

        area = QtCore.Qt.DockWidgetArea
        left, right, bottom = area.LeftDockWidgetArea, area.RightDockWidgetArea, area.BottomDockWidgetArea
        # Titles name what each dock holds (the View menu and `--smoke-test N --json` use them too).
        self.watchlist_dock = self._dock("Watchlist", left, "Every feed symbol: last, change, spread")
        self.book_dock = self._dock("Order book", left, "The order book of the symbol on screen")
        self.trades_dock = self._dock("Trades", left, "Time and sales of the symbol on screen")
        self.decisions_dock = self._dock("Decisions", right)
        self.perf_dock = self._dock("Performance", bottom)
        self.orders_dock = self._dock("Orders", bottom)
        self.trading_dock = self._dock("Account · Ticket", bottom)
        self.log_dock = self._dock("Log", bottom)
        self.docks = (self.watchlist_dock, self.book_dock, self.trades_dock, self.decisions_dock, self.orders_dock,
                      self.trading_dock, self.perf_dock, self.log_dock)
        self.splitDockWidget(self.watchlist_dock, self.book_dock, QtCore.Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.book_dock, self.trades_dock)
        self.book_dock.raise_()
        self.splitDockWidget(self.orders_dock, self.trading_dock, QtCore.Qt.Orientation.Horizontal)
        self.tabifyDockWidget(self.orders_dock, self.log_dock)
        self.tabifyDockWidget(self.log_dock, self.perf_dock)
        self.orders_dock.raise_()
        # The Decisions dock is what the trader acts from: the right column is its own and runs the window's full
        # height (pending proposals and one line per symbol without scrolling). The bottom row, under the chart and
        # the watchlist, is what the trader trades from: the orders (Log and Performance tabbed behind them) and
        # the account and ticket, wide enough to show both side by side.
        self.setCorner(QtCore.Qt.Corner.BottomRightCorner, right)
        self.setCorner(QtCore.Qt.Corner.TopRightCorner, right)
        self.setCorner(QtCore.Qt.Corner.TopLeftCorner, left)
        self.setCorner(QtCore.Qt.Corner.BottomLeftCorner, bottom)
        self._default_dock_sizes()

        self._build_status_bar()
        self._build_menus()
        self._started = time.monotonic()
        self.panels_built = False
        self._restore_ui_state(restore_view)
        self._fit_to_screen()
        if session is not None:
            self.attach_session(session)
        if build_panels:
            self.build_panels()

    def attach_session(self, session: Session) -> None:
        """The session, made after the frame was shown: what the frame said "starting…" about (broker, source,
        model, auto-approve) and the timers that refresh the window from it. The panels come next
        (``build_panels``)."""
        if self.attached:
            raise RuntimeError("the window has a session already")
        from app.llm.local import provider_label, provider_tooltip
        from app.ui.bridge import UiBridge

        self.session = session
        self.symbols = list(session.symbols)
        self.attached = True
        self.bridge = UiBridge(session, self, self)
        self.setWindowTitle(self._title(self.symbol))
        self.mode_label.setText(session.broker_label)
        self.mode_label.setProperty("mode", "LIVE" if session.is_live else "PAPER")
        self.mode_label.setToolTip(self._mode_tooltip())
        for lab in (self.mode_label, self.feed_label):
            lab.style().unpolish(lab)  # their properties changed: the theme's colours for them again
            lab.style().polish(lab)
        self.feed_label.setText("● CONNECTING")
        self.source_label.setText(session.source_label)
        p = session.provider
        self.model_status.setText(provider_label(p))
        self.model_status.setToolTip(provider_tooltip(p, session.model_fallback))
        self._check_auto(session.desk.proposals.auto_approve)
        self._show_auto_approve()
        for action in self._session_actions:
            action.setEnabled(True)
        self.hotkey_actions["settings"].setEnabled(self.config_path is not None)
        self.status_strip.fit()

    @functools.cached_property
    def view_model(self) -> ViewModel:
        """Every snapshot the window renders. Made on first use (the first refresh, after the first paint): its
        snapshot types cost ~10-30 ms to define, which need not delay the window."""
        from app.view.model import ViewModel

        return ViewModel(self.session)

    def build_panels(self) -> None:
        """The side panels, into the dock frames made by __init__ (about half of the window's construction)."""
        if self.panels_built:
            return
        if not self.attached:
            raise RuntimeError("build_panels() needs the session: attach_session() first")
        # Imported here, not at the top: defining the table models makes PySide6 build ~100 Qt enums (~15 ms),
        # which need not delay the first paint.
        from app.ui.blotter import Blotter
        from app.ui.decisions import DecisionsPanel
        from app.ui.log_dock import LogView
        from app.ui.order_book import OrderBookPanel
        from app.ui.perf_panel import PerfPanel
        from app.ui.proposal_actions import ProposalActions
        from app.ui.tape import TapePanel
        from app.ui.trading_panel import TradingPanel
        from app.ui.watchlist import WatchlistPanel

        session = self.session
        # Every panel renders the view model's snapshots; what the trader asks goes to the desk's commands.
        vm = self.view_model
        self.blotter: Blotter = Blotter(source=vm.blotter)
        self.trading_panel: TradingPanel = TradingPanel(session.desk, self.symbol, self.blotter,
                                                        mode_text=session.broker_label,
                                                        touch=vm.touch)
        self.blotter.modify_requested.connect(self._modify_order)
        self.blotter.cancel_requested.connect(self._cancel_order)
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
        self.chart.order_moved.connect(self._move_order)
        self.chart.bracket_moved.connect(self._move_bracket)
        self.watchlist_panel = WatchlistPanel()
        self.watchlist_panel.symbol_chosen.connect(self.set_symbol)
        self.watchlist_panel.set_current(self.symbol)
        self.book_panel = OrderBookPanel()
        self.book_panel.price_chosen.connect(self.trading_panel.set_price)  # a click on a level prices the ticket
        self._book_group = 1
        self.book_panel.group_changed.connect(self._set_book_group)
        self.tape_panel = TapePanel()
        for dock, widget in ((self.watchlist_dock, self.watchlist_panel), (self.book_dock, self.book_panel),
                             (self.trades_dock, self.tape_panel),
                             (self.decisions_dock, self.decisions_panel), (self.orders_dock, self.blotter),
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
        h, v = QtCore.Qt.Orientation.Horizontal, QtCore.Qt.Orientation.Vertical
        self.resizeDocks([self.decisions_dock], [380], h)
        # The ticket wants ~580 px to show the account beside it; on a narrow screen the orders keep half the row.
        bottom = max(800, self.width() - 380)
        ticket = 580 if bottom >= 1000 else bottom // 2
        self.resizeDocks([self.orders_dock, self.trading_dock], [bottom - ticket, ticket], h)
        # The watchlist's columns (last, session %, 24 h %, spread) want ~300 px; a narrow screen takes it from here.
        self.resizeDocks([self.watchlist_dock, self.book_dock], [300, 300], h)
        self.resizeDocks([self.watchlist_dock, self.book_dock], [260, 400], v)
        self.resizeDocks([self.orders_dock], [230], v)

    def _dock(self, title: str, area, hint: str = "") -> QtWidgets.QDockWidget:
        """A dock the trader can close (×), float and dock again; the View menu brings it back. A floating dock
        wears an accent title bar (its ``floating`` property, styled in the theme) and comes back on top, active,
        when reopened (it used to reopen behind the main window)."""
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title.lower().replace(" · ", "_").replace(" ", "_"))
        F = QtWidgets.QDockWidget.DockWidgetFeature
        dock.setFeatures(F.DockWidgetClosable | F.DockWidgetMovable | F.DockWidgetFloatable)
        dock.setWidget(_placeholder(hint))
        dock.topLevelChanged.connect(lambda floating, d=dock: self._dock_floating(d, floating))
        dock.toggleViewAction().triggered.connect(lambda on, d=dock: on and self.bring_dock(d))
        self.addDockWidget(area, dock)
        return dock

    def _dock_floating(self, dock: QtWidgets.QDockWidget, floating: bool) -> None:
        # QDockWidget's own "floating" property selects the style (QDockWidget[floating="true"]): polish again.
        dock.style().unpolish(dock)
        dock.style().polish(dock)
        if floating:
            self.bring_dock(dock)

    def bring_dock(self, dock: QtWidgets.QDockWidget) -> None:
        """Show a dock where the trader sees it: docked, its tab in front; floating, its window raised above the
        main window and active (now, and once more after the window manager mapped it)."""
        dock.show()
        dock.raise_()
        if dock.isFloating():
            dock.activateWindow()
            QtCore.QTimer.singleShot(0, dock, lambda: (dock.raise_(), dock.activateWindow()))

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
        if isinstance(symbol, str) and symbol in self.symbols:
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
        if not self.attached:
            return f"AI Trading Terminal — {symbol} — {STARTING}"
        return f"AI Trading Terminal — {symbol} — {self.session.source_label} — {self.session.broker_label}"

    def _build_status_bar(self) -> None:
        """One strip, most important first: where orders go (LIVE in red, PAPER calm), then the prices of the
        symbol on screen, then faults, feed, risk, equity, the SLOW badge, pending proposals, the message rate, the
        data source and the model. At 1280 px the least important items are hidden whole; the prices never are."""
        sb = self.statusBar()
        self.status_strip = strip = StatusStrip()

        def label(name: str = "", text: str = "") -> QtWidgets.QLabel:
            lab = QtWidgets.QLabel(text)
            if name:
                lab.setObjectName(name)
            return lab

        # Broker, source and model are the session's: "starting…" until attach_session (a few tenths of a second).
        self.mode_label = label("brokerMode", STARTING.upper())
        self.mode_label.setToolTip("The terminal is starting: the journal, the account and the feed come next")
        # Live only, red beside the label: orders sent with nobody confirming each; fills not arriving.
        self.auto_label = live_status.auto_badge()
        self.stream_label = live_status.stream_label()
        self.price_label = label("priceLabel", f"{self.symbol} —")
        # Red, naming the part that failed: the terminal never runs half-dead without saying so.
        self.fault_label = label("feedState")
        self.fault_label.setProperty("level", "bad")
        self.feed_label = label("feedState", f"● {STARTING.upper()}")
        self.feed_label.setProperty("level", "warn")
        self.risk_label = label("riskState")
        self.equity_label = label("priceLabel")
        self.perf_badge = label("perfBadge")
        self.pending_label = label("pendingCount")
        self.pending_label.setToolTip("Proposals waiting for you in the Decisions dock")
        self.rate_label = label("", "0 msg/s")
        self.source_label = label("sourceLabel")
        self.source_label.setToolTip("Where market data comes from")
        self.model_status = label("sourceLabel")
        self._status_labels = {"prices": self.price_label, "fault": self.fault_label, "feed": self.feed_label,
                               "risk": self.risk_label, "equity": self.equity_label, "slow": self.perf_badge,
                               "pending": self.pending_label, "rate": self.rate_label}
        for lab, rank, wanted in (
            (self.mode_label, RANK_MODE, True), (self.auto_label, RANK_MODE, False),
            (self.stream_label, RANK_FAULT, False), (self.price_label, RANK_PRICES, True),
            (self.fault_label, RANK_FAULT, False), (self.feed_label, RANK_FEED, True),
            (self.risk_label, RANK_RISK, False), (self.equity_label, RANK_EQUITY, False),
            (self.perf_badge, RANK_SLOW, False), (self.pending_label, RANK_PENDING, False),
            (self.rate_label, RANK_RATE, True), (self.source_label, RANK_RATE + 1, True),
            (self.model_status, RANK_RATE + 2, True),
        ):
            strip.add(lab, rank, wanted)
        sb.addWidget(strip, 1)
        self.slow_watch = SlowWatch(self.settings.perf_thresholds_ms)
        self.status: StatusView | None = None

    def _mode_tooltip(self) -> str:
        session = self.session
        live = session.live
        if session.is_live and live is not None and live.account is not None:
            return (f"Orders go to {session.broker_label.removeprefix('LIVE · ')}, account {live.account.account}. "
                    f"Journal: {session.journal.path.name}")
        why = f" Live trading was asked for: {live.reason}" if live is not None and live.reason else ""
        return f"Orders are filled on paper against the live market (no exchange account).{why}"

    def _build_menus(self) -> None:
        """Menus; every key is bound from the one hotkey table (``Settings.hotkeys``, defaults in
        ``app.config.HOTKEY_ACTIONS``), which Help > Keyboard shortcuts lists."""
        self.hotkeys: dict[str, str] = dict(self.settings.hotkeys)
        self.hotkey_actions: dict[str, QtGui.QAction] = {}
        # What needs the session (its desk, journal, model) is disabled until attach_session enables it.
        self._session_actions: list[QtGui.QAction] = []
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "settings", "&Settings…", self.open_settings).setEnabled(False)
        file_menu.addAction("Open &log folder").triggered.connect(self._open_log_folder)
        file_menu.addSeparator()
        self._action(file_menu, "quit", "&Quit", self.close)
        view = bar.addMenu("&View")
        for dock in self.docks:
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        self._action(view, "follow_live_edge", "Follow live edge", lambda: self.chart.set_follow(True))
        tf_menu = view.addMenu("Timeframe")
        for tf in self.chart._tf_buttons:
            self._action(tf_menu, f"timeframe_{tf}", tf, lambda tf=tf: self.chart.set_timeframe(tf))
        # The window binds the chart's keys from the table: the chart's own End would make both ambiguous (Qt
        # then fires neither).
        for shortcut in self.chart.findChildren(QtGui.QShortcut):
            shortcut.setEnabled(False)
        decide = bar.addMenu("&Decisions")
        self._action(decide, "ask_now", "Ask now", lambda: self.panels_built and self.decisions_panel.ask_now())
        decide.addSeparator()
        # Single keys act on the proposal the Decisions dock highlights (the symbol on screen's newest, else the
        # clicked card), never another symbol's; text fields keep their letters (Qt gives them priority).
        for act, text in (("approve", "Approve highlighted proposal"), ("reject", "Reject highlighted proposal"),
                          ("modify", "Modify highlighted proposal…")):
            self._action(decide, act, text, lambda act=act: self._on_proposal_key(act))
        trade = bar.addMenu("&Trading")
        self._action(trade, "buy_at_ask", "Buy at the ask (ticket quantity)",
                     lambda: self.trade_hotkey("buy_at_ask"))
        self._action(trade, "sell_at_bid", "Sell at the bid (ticket quantity)",
                     lambda: self.trade_hotkey("sell_at_bid"))
        self._action(trade, "cancel_all", "Cancel all working orders", lambda: self.trade_hotkey("cancel_all"))
        self._action(trade, "flatten_all", "Flatten all positions", lambda: self.trade_hotkey("flatten_all"))
        flatten = trade.addAction("Flatten position (symbol on screen)")
        flatten.triggered.connect(lambda: self.panels_built and self.trading_panel.flatten_button.click())
        self._action(trade, "kill_switch", "Kill switch: cancel all, flatten, halt",
                     lambda: self.panels_built and self.trading_panel.kill_button.click())
        trade.addSeparator()
        auto = self.auto_action = trade.addAction("Auto-approve within its strict limits")
        auto.setCheckable(True)
        auto.toggled.connect(self._set_auto_approve)
        trade.addSeparator()
        report = trade.addAction("Counterfactual report…")
        report.triggered.connect(self._show_report)
        export = trade.addAction("Export journal to CSV")
        export.triggered.connect(self._export_csv)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "keyboard_help", "&Keyboard shortcuts", self.open_keyboard_help)
        about = help_menu.addAction("&About AI Trading Terminal")
        about.triggered.connect(self.open_about)
        self._session_actions = [auto, report, export, about]
        for action in self._session_actions:
            action.setEnabled(False)

    def _action(self, menu: QtWidgets.QMenu, name: str, text: str, slot) -> QtGui.QAction:
        """A menu item bound to the hotkey table's key for ``name`` (none when the table leaves it empty)."""
        action = menu.addAction(text)
        key = self.hotkeys.get(name, "")
        if key:
            action.setShortcut(QtGui.QKeySequence(key))
        action.setObjectName(f"hotkey_{name}")
        action.triggered.connect(lambda _=False: slot())
        self.hotkey_actions[name] = action
        return action

    def trade_hotkey(self, name: str) -> None:
        """Buy at the ask / sell at the bid with the ticket's quantity (the ticket says what happened), cancel all
        working orders, flatten all positions: through the desk's commands, results in the ticket's message line."""
        if not self.panels_built:
            return
        from app.models import Side
        from app.ui.trading_panel import run_action

        panel = self.trading_panel
        if name in ("buy_at_ask", "sell_at_bid"):
            panel.send_at_touch(Side.BUY if name == "buy_at_ask" else Side.SELL)
            return
        desk = self.session.desk
        command = {"cancel_all": desk.cancel_all, "flatten_all": desk.flatten_all}[name]
        run_action(command(), panel.show_result)

    # ----- what the trader asks from the chart and the blotter: the desk's commands, results under the ticket -----
    def _command(self, coro) -> None:
        from app.ui.trading_panel import run_action

        run_action(coro, self.trading_panel.show_result)

    def _move_order(self, order_id: str, price) -> None:
        """A working order's line dragged on the chart: a limit moves its limit, a stop its stop (risk checks again)."""
        from app.trading.desk import ActionResult

        row = next((r for r in self.view_model.chart_orders(self.symbol) if r.order_id == order_id), None)
        if row is None:
            self.trading_panel.show_result(ActionResult(False, f"order {order_id} is no longer working"))
            return
        if row.type == "LIMIT":
            self._command(self.session.desk.replace_order(order_id, price=price))
        else:
            self._command(self.session.desk.replace_order(order_id, stop_price=price))

    def _move_bracket(self, symbol: str, which: str, price) -> None:
        desk = self.session.desk
        if which == "SL":
            self._command(desk.move_bracket(symbol, stop_loss=price))
        else:
            self._command(desk.move_bracket(symbol, take_profit=price))

    def _modify_order(self, order_id: str) -> None:
        """The blotter's Modify…: the ticket takes the working order; Send becomes Replace."""
        if self.trading_panel.load_order(order_id):
            self.trading_dock.show()
            self.trading_dock.raise_()

    def _cancel_order(self, order_id: str) -> None:
        self._command(self.session.desk.cancel(order_id))

    def open_keyboard_help(self) -> QtWidgets.QDialog:
        if "keys" in self._dialogs:
            self._dialogs["keys"].raise_()
            self._dialogs["keys"].activateWindow()
            return self._dialogs["keys"]
        from app.ui.help import KeyboardHelp

        return self._keep("keys", KeyboardHelp(self.hotkeys, self), modal=False)

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
                                mode_text=self.session.broker_label, overridden=self.flag_overrides)
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

        show_report(self, self.session.journal, self.session.market, self.session.desk.portfolio.equity(),
                    instruments=self.session.desk.instruments)

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
        self.status_strip.want(self.pending_label, bool(n))

    def _show_perf_badge(self, _text: str = "") -> None:
        """After each performance refresh: the badge only for a sustained slowness (``SlowWatch``), never for
        one p99 window over a target; it goes once the stage has recovered."""
        badge = self.slow_watch.observe(time.monotonic(), self.perf_panel.badge_p99_ns())
        item = None if badge is None else StatusItem("slow", badge.text, "warn", RANK_SLOW, badge.tooltip)
        self.status_strip.apply(self.perf_badge, item)

    def set_symbol(self, symbol: str) -> None:
        if symbol not in self.symbols or symbol == self.symbol:
            return
        self.symbol = symbol
        self.chart.set_symbol(symbol)
        self.setWindowTitle(self._title(symbol))
        if self.panels_built:
            self.trading_panel.symbol = symbol
            self.decisions_panel.symbol = symbol
            self.watchlist_panel.set_current(symbol)
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
        from app.trading.desk import ActionResult

        self.session.desk.set_auto_approve(on)
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
        self.status_strip.want(self.auto_label, self.session.is_live and self.session.desk.proposals.auto_approve)

    def _show_stream(self) -> None:
        text = live_status.stream_text(self.session.user_stream_down_s())
        if self.stream_label.text() != text:
            self.stream_label.setText(text)
        self.status_strip.want(self.stream_label, bool(text))

    def _export_csv(self) -> None:
        from app.trading.desk import ActionResult

        folder = self.session.journal.path.parent / "export"
        try:
            paths = self.session.journal.export_csv(folder)
        except OSError as exc:
            self.trading_panel.show_result(ActionResult(False, f"export failed: {exc}"))
            return
        self.trading_panel.show_result(ActionResult(True, f"{len(paths)} CSV files written to {folder}"))

    # ----- refreshed by the bridge --------------------------------------------------------------------------
    def refresh_slow(self, rate: float, *, spread: bool = False) -> None:
        """The status bar now, then every panel. ``spread`` (the bridge's 4 Hz timer): each panel in a turn of the
        event loop of its own, timed as a UI frame of its own, so the feed is read between them and no single hold
        is the sum of all panels; False (tests, a tick): all of them now."""
        from app.llm.local import provider_label, provider_tooltip

        self._show_status(rate)
        self._show_stream()
        p = self.session.decisions.provider
        model_text = provider_label(p)
        if self.model_status.text() != model_text:
            self.model_status.setText(model_text)
            self.model_status.setToolTip(provider_tooltip(p, self.session.model_fallback))
        self.status_strip.fit()  # texts changed width: what fits may have changed
        if not self.panels_built:
            return
        vm, symbol = self.view_model, self.symbol
        # Each panel on its own: one that fails is logged and counted, and the others (and the chart) still refresh.
        steps: list[tuple[str, Callable[[], object]]] = [
            ("decisions", self.decisions_panel.refresh),
            ("orders", self.blotter.refresh),
            ("account", lambda: self.trading_panel.refresh(vm.account(symbol))),
            *self._market_steps(),
            ("chart levels", lambda: self._render_chart_levels(symbol)),
            ("log", self.log_view.flush),
        ]
        if not spread:
            for name, render in steps:
                self._render(name, render)
            return
        for name, render in steps:
            QtCore.QTimer.singleShot(0, self, lambda n=name, r=render: self.bridge.timed(lambda: self._render(n, r)))

    def _render(self, name: str, render: Callable[[], object]) -> None:
        try:
            render()
        except Exception:
            self.render_failures[name] = self.render_failures.get(name, 0) + 1
            now = time.monotonic()
            if now - self._render_logged.get(name, -RENDER_LOG_EVERY_S) >= RENDER_LOG_EVERY_S:
                self._render_logged[name] = now
                log.exception("the %s panel failed to refresh (%d times so far); the others go on",
                              name, self.render_failures[name])

    def _render_chart_levels(self, symbol: str) -> None:
        desk, vm = self.session.desk, self.view_model
        self.chart.set_instrument(desk.instruments.get(symbol))
        self.chart.show_proposals(self.session.decisions.decisions, self.session.decisions.version)
        p = vm.chart_position(symbol)
        self.chart.show_position(p.position, (p.stop, p.target), p.fills, p.mark)
        self.chart.show_orders(vm.chart_orders(symbol))

    def _market_steps(self) -> list[tuple[str, Callable[[], object]]]:
        """Watchlist, order book and trades from the view model; a closed or hidden dock costs nothing."""
        vm, symbol = self.view_model, self.symbol
        steps: list[tuple[str, Callable[[], object]]] = []
        if self.watchlist_dock.isVisible():
            steps.append(("watchlist", lambda: self.watchlist_panel.render(vm.watchlist())))
        if self.book_dock.isVisible():
            steps.append(("order book", lambda: self.book_panel.render(
                vm.book(symbol, depth=self.book_panel.depth, group=self._book_group))))
        if self.trades_dock.isVisible():
            steps.append(("trades", lambda: self.tape_panel.render(vm.tape(symbol))))
        return steps

    def _set_book_group(self, ticks: int) -> None:
        self._book_group = max(1, int(ticks))
        if self.book_dock.isVisible():
            self.book_panel.render(self.view_model.book(self.symbol, depth=self.book_panel.depth,
                                                        group=self._book_group))

    def status_snapshot(self, rate: float) -> StatusView:
        """The status bar's model for now (``ViewModel.status``); account figures once the panels are built."""
        return self.view_model.status(self.symbol, rate, slow=self.slow_watch.badge(), account=self.panels_built)

    def _show_status(self, rate: float) -> None:
        view = self.status = self.status_snapshot(rate)
        for key, lab in self._status_labels.items():
            self.status_strip.apply(lab, view.get(key))

    def refresh_perf(self, spread: bool = True) -> None:
        """``spread``: the panel's steps in separate turns of the loop (the timer); False: all now."""
        if self.panels_built:
            self.perf_panel.refresh(self.symbol, self.chart.timeframe, time.monotonic() - self._started,
                                    spread=spread, timed=self.bridge.timed)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if self.attached:
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
