"""The Decisions dock, the panel a trader acts from: pending proposals pinned on top with their countdown, one line
per symbol with its current decision, then the history of answers that changed something.

It renders ``app.view.decision_board`` snapshots. Rows are keyed: a refresh sets texts in place and builds or drops
widgets only when a section's keys change (a refresh must cost next to nothing: it shares one loop with the feed).

Model text is shown as plain text, never rich text: a rationale that contains markup or instructions is displayed
inertly, character for character.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable

from PySide6 import QtCore, QtWidgets

from app.llm.local import provider_tooltip
from app.llm.schema import CacheStatus
from app.llm.service import DecisionService, ModelState
from app.market.instruments import Instruments
from app.trading.proposals import Proposal, ProposalBook, ProposalStatus
from app.ui import theme
from app.view.decisions import DecisionBoard, HistoryRow, PendingRow, SymbolRow, decision_board, duration_text

ACTION_LEVEL = {"BUY": "buy", "SELL": "sell", "HOLD": "hold", "CLOSE": "close", "ERROR": "error"}
BADGE_TIPS = {
    CacheStatus.HIT.value: "Served from the cache: the very same prompt was answered before. Its latency is the "
                           "lookup's; 'answer … old' is the age of the stored answer",
    CacheStatus.SIMILAR.value: "Served from the cache: every feature within tolerance of a stored answer and the "
                               "price within its band. Its latency is the lookup's; 'answer … old' is the age of the "
                               "stored answer",
    CacheStatus.MISS.value: "A fresh answer from the model",
    CacheStatus.OFFLINE.value: "The built-in offline rules, not a language model",
    CacheStatus.ERROR.value: "The request failed; this is not a proposal",
}

LONG_RUN = 24  # characters without a space after which a card's text may break anyway
_LONG_RUN_RE = re.compile(rf"\S{{{LONG_RUN},}}")


def wrappable(text: str) -> str:
    """Model text with a break opportunity (a zero-width space) every LONG_RUN characters of a run without spaces.
    A QLabel wraps only at spaces, so one long token ("100,000,000,...", a URL, a hostile answer) would widen the
    card past the panel and hide the rest; ordinary words are left alone."""
    if len(text) <= LONG_RUN or _LONG_RUN_RE.search(text) is None:
        return text
    return _LONG_RUN_RE.sub(
        lambda m: "\u200b".join(m.group(0)[i : i + LONG_RUN] for i in range(0, len(m.group(0)), LONG_RUN)), text)


def _label(text: str = "", name: str | None = None, wrap: bool = False, clip: bool = False) -> QtWidgets.QLabel:
    """``clip``: the label never widens the panel (a long rationale on a one-line row is cut at the edge)."""
    lab = QtWidgets.QLabel(wrappable(text) if wrap else text)
    lab.setTextFormat(QtCore.Qt.TextFormat.PlainText)
    lab.setWordWrap(wrap)
    if clip:
        lab.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
    if name:
        lab.setObjectName(name)
    return lab


def _set(label: QtWidgets.QLabel, text: str, wrap: bool = False) -> None:
    """Set a label's text only when it changed: an unchanged setText still costs a relayout."""
    text = wrappable(text) if wrap else text
    if label.text() != text:
        label.setText(text)


def _set_prop(widget: QtWidgets.QWidget, name: str, value) -> None:
    """A style property (colours in the .qss); re-polished only when it changed."""
    if widget.property(name) != value:
        widget.setProperty(name, value)
        widget.style().unpolish(widget)
        widget.style().polish(widget)


def _badge(label: QtWidgets.QLabel, status: str, text: str) -> None:
    _set(label, text)
    _set_prop(label, "status", status)
    label.setToolTip(BADGE_TIPS.get(status, ""))


def _action(label: QtWidgets.QLabel, action: str) -> None:
    _set(label, action)
    _set_prop(label, "level", ACTION_LEVEL.get(action, "hold"))


def countdown_text(row: PendingRow) -> str:
    if row.held:
        return "held: being modified"
    return f"expires in {row.countdown_s:.0f} s"


class PendingCard(QtWidgets.QFrame):
    """A proposal waiting for the trader: what, how much, at what price, worth what, for how long; its buttons."""

    clicked = QtCore.Signal(str)  # the proposal id: the trader chose this card for A / R / M

    def __init__(self, proposal: Proposal, actions=None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.proposal = proposal
        self.decision = proposal.decision
        self.key = proposal.id
        self.setObjectName("pendingCard")
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.setCursor(QtCore.Qt.CursorShape.PointingHandCursor)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(8, 5, 8, 5)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(2)
        self.action_label = _label("", "cardAction")
        self.symbol_label = _label(proposal.decision.symbol, "cardSymbol")
        self.side_label = _label("", "cardMuted", clip=True)
        self.target_label = _label("A · R · M", "cardTarget")
        self.target_label.setToolTip("The keys A (approve), R (reject) and M (modify) act on this proposal")
        self.badge = _label("", "cardBadge")
        head = QtWidgets.QHBoxLayout()
        head.setSpacing(8)
        head.addWidget(self.action_label)
        head.addWidget(self.symbol_label)
        head.addWidget(self.side_label, 1)
        head.addWidget(self.target_label)
        head.addWidget(self.badge)
        grid.addLayout(head, 0, 0)
        self.numbers = _label("", "cardNumbers", clip=True)  # price and order value: what the trader checks first
        grid.addWidget(self.numbers, 1, 0)
        self.order_label = _label("", "cardMuted", clip=True)
        grid.addWidget(self.order_label, 2, 0)
        self.rationale = _label("", "cardRationale", wrap=True)
        grid.addWidget(self.rationale, 3, 0)
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        row = QtWidgets.QHBoxLayout()
        row.setSpacing(6)
        if actions is not None:
            mode = getattr(actions, "mode", "PAPER")  # LIVE or PAPER: Approve says where the order goes
            for name, slot, key in (("Approve", actions.approve, "A"), ("Reject", actions.reject, "R"),
                                    ("Modify", actions.modify, "M")):
                b = QtWidgets.QPushButton(f"Approve {mode}" if name == "Approve" else name)
                b.setObjectName(f"card{name}")
                b.setProperty("mode", mode)
                sends = f": a {mode} order" if name in ("Approve", "Modify") else ""
                b.setToolTip(f"{name} this proposal{sends} (key {key} acts on the highlighted one)")
                b.clicked.connect(lambda _=False, slot=slot: slot(self.proposal))
                row.addWidget(b)
                self.buttons[name] = b
        self.status_label = _label("", "cardCountdown", clip=True)  # never widens the card past the dock
        self.status_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.status_label, 1)
        grid.addLayout(row, 4, 0)

    def mousePressEvent(self, event) -> None:
        self.clicked.emit(self.key)
        super().mousePressEvent(event)

    def show_row(self, row: PendingRow, target: bool) -> None:
        _action(self.action_label, row.action)
        _set(self.side_label, row.side_text)
        _set(self.numbers, f"price {row.price}   value {row.order_value or '—'}")
        _set(self.order_label, " · ".join(t for t in (row.order_text.replace("  ", " · "),
                                                        f"conf {row.confidence:.2f}") if t))
        _set(self.rationale, row.rationale, wrap=True)
        _badge(self.badge, row.badge, row.badge_text)
        _set(self.status_label, countdown_text(row))
        _set_prop(self, "target", target)
        self.target_label.setVisible(target)

    def update_status(self, now: float) -> None:
        """The proposal's own state: countdown while pending, the outcome once reviewed (buttons then disabled)."""
        p = self.proposal
        pending = p.status.value == "PENDING"
        text = f"expires in {p.remaining_s(now):.0f} s" if pending else p.status.value
        if not pending and p.reason:
            text += f" · {p.reason}"
        _set(self.status_label, text)
        for b in self.buttons.values():
            b.setEnabled(pending)

    def flash(self, on: bool) -> None:
        _set_prop(self, "flash", on)


class SymbolLine(QtWidgets.QFrame):
    """One symbol's current decision: action, badge, how long it has stood, how often the cache confirmed it."""

    clicked = QtCore.Signal(str)  # the symbol

    def __init__(self, symbol: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = symbol
        self.setObjectName("symbolLine")
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(6, 2, 6, 2)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(0)
        self.symbol_label = _label(symbol, "lineSymbol")
        self.symbol_label.setMinimumWidth(72)
        self.action_label = _label("", "cardAction")
        self.action_label.setMinimumWidth(40)
        self.badge = _label("", "cardBadge")
        self.age_label = _label("", "cardMuted", clip=True)
        self.age_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        self.detail = _label("", "lineDetail", clip=True)
        grid.addWidget(self.symbol_label, 0, 0)
        grid.addWidget(self.action_label, 0, 1)
        grid.addWidget(self.badge, 0, 2)
        grid.addWidget(self.age_label, 0, 3)
        grid.addWidget(self.detail, 1, 0, 1, 4)
        grid.setColumnStretch(3, 1)

    def mousePressEvent(self, event) -> None:
        self.clicked.emit(self.key)
        super().mousePressEvent(event)

    def show_row(self, row: SymbolRow, on_screen: bool) -> None:
        _action(self.action_label, row.action)
        _badge(self.badge, row.badge, row.badge_text)
        self.badge.setVisible(bool(row.badge))
        _set(self.age_label, "" if row.age_s is None else f"{duration_text(row.age_s)} ago")
        _set(self.detail, " — ".join(t for t in (row.standing_text, row.rationale) if t))
        self.detail.setToolTip(row.rationale)
        _set_prop(self, "onScreen", on_screen)


class HistoryLine(QtWidgets.QFrame):
    """An answer that changed something (a new action, a fresh model call, an error): one muted line."""

    def __init__(self, key: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = key
        self.setObjectName("historyLine")
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(6, 1, 6, 1)
        row.setSpacing(8)
        self.when = _label("", "cardMuted")
        self.action_label = _label("", "historyAction")
        self.badge = _label("", "cardBadge")
        self.rationale = _label("", "lineDetail", clip=True)
        row.addWidget(self.when)
        row.addWidget(self.action_label)
        row.addWidget(self.badge)
        row.addWidget(self.rationale, 1)

    def show_row(self, row: HistoryRow) -> None:
        when = dt.datetime.fromtimestamp(row.state_ms / 1000).strftime("%H:%M:%S") if row.state_ms else "—"
        _set(self.when, f"{when} {row.symbol}")
        _action(self.action_label, row.action)
        _badge(self.badge, row.badge, row.badge_text)
        _set(self.rationale, row.rationale)
        self.rationale.setToolTip(row.rationale)


class _Section:
    """A keyed list of row widgets in a layout: rebuilt only when its keys change, else updated in place."""

    def __init__(self, layout: QtWidgets.QVBoxLayout, make: Callable[[str], QtWidgets.QWidget]) -> None:
        self.layout = layout
        self.make = make
        self.widgets: dict[str, QtWidgets.QWidget] = {}
        self.keys: tuple[str, ...] = ()
        self.rebuilds = 0

    def sync(self, keys: tuple[str, ...]) -> list[str]:
        """Make the widgets match ``keys`` (in order); returns the keys that are new."""
        if keys == self.keys:
            return []
        self.rebuilds += 1
        new = [k for k in keys if k not in self.widgets]
        for k in [k for k in self.widgets if k not in set(keys)]:
            w = self.widgets.pop(k)
            self.layout.removeWidget(w)
            w.hide()
            w.deleteLater()
        for k in new:
            self.widgets[k] = self.make(k)
        for i, k in enumerate(keys):  # in order; insertWidget moves a widget already in the layout
            w = self.widgets[k]
            if self.layout.indexOf(w) != i:
                self.layout.removeWidget(w)
                self.layout.insertWidget(i, w)
            w.show()
        self.keys = keys
        return new


def _section_header(text: str) -> QtWidgets.QLabel:
    return _label(text, "sectionHeader")


class DecisionsPanel(QtWidgets.QWidget):
    """Renders decision boards; A / R / M and the buttons act through ``actions`` (``ProposalActions``)."""

    proposal_arrived = QtCore.Signal(str)  # a proposal the panel shows for the first time (its id)
    symbol_chosen = QtCore.Signal(str)  # a symbol line was clicked: the window shows that symbol

    def __init__(self, service: DecisionService, symbol: str, desk=None, actions=None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self.desk = desk
        self.actions = actions
        self.symbol = symbol  # the symbol on screen
        self.selected: str | None = None  # the proposal card the trader clicked
        self.board: DecisionBoard | None = None
        self._version = -1
        self._announced: set[str] = set()
        self._book = desk.proposals if desk is not None else ProposalBook()
        self._instruments = desk.instruments if desk is not None else Instruments()
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(6, 4, 6, 4)
        outer.setSpacing(4)
        top = QtWidgets.QHBoxLayout()
        self.model_label = _label("", "modelLabel")
        self.state_label = _label("", "modelState")
        self.ask_button = QtWidgets.QPushButton("Ask now")
        self.ask_button.setObjectName("askNow")
        self.ask_button.setToolTip("Ask for a decision on the symbol on screen now (Ctrl+Enter)")
        self.ask_button.clicked.connect(self.ask_now)
        top.addWidget(self.model_label, 1)
        top.addWidget(self.state_label)
        top.addWidget(self.ask_button)
        outer.addLayout(top)
        self.cache_label = _label("", "cacheStats", wrap=True)
        self.cache_label.setToolTip("In the last hour: asks answered from the cache instead of a model call, the "
                                    "model calls made and what the cache saved. Since start: how often a fresh call "
                                    "agreed with a served answer (the audit; its checks are extra model calls)")
        outer.addWidget(self.cache_label)

        holder = QtWidgets.QWidget()
        holder.setObjectName("cardHolder")
        body = QtWidgets.QVBoxLayout(holder)
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(3)
        self.pending_header = _section_header("PENDING")
        self.target_hint = _label("", "targetHint", wrap=True)
        self._pending_box = QtWidgets.QVBoxLayout()
        self._pending_box.setSpacing(4)
        self.symbols_header = _section_header("NOW, PER SYMBOL")
        self._symbol_box = QtWidgets.QVBoxLayout()
        self._symbol_box.setSpacing(1)
        self.history_header = _section_header("HISTORY · changes and model calls")
        self._history_box = QtWidgets.QVBoxLayout()
        self._history_box.setSpacing(0)
        for item in (self.pending_header, self.target_hint, self._pending_box, self.symbols_header,
                     self._symbol_box, self.history_header, self._history_box):
            if isinstance(item, QtWidgets.QLayout):
                body.addLayout(item)
            else:
                body.addWidget(item)
        body.addStretch(1)
        self.pending = _Section(self._pending_box, self._make_card)
        self.symbols = _Section(self._symbol_box, self._make_line)
        self.history = _Section(self._history_box, lambda k: HistoryLine(k))
        self.scroll = QtWidgets.QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # rows wrap or clip
        self.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.scroll.setWidget(holder)
        outer.addWidget(self.scroll, 1)
        self.refresh()

    # ----- rows -------------------------------------------------------------------------------------------------
    def _make_card(self, key: str) -> PendingCard:
        card = PendingCard(self._book.proposals[key], self.actions)
        card.clicked.connect(self.select)
        return card

    def _make_line(self, key: str) -> SymbolLine:
        line = SymbolLine(key)
        line.clicked.connect(self.symbol_clicked)
        return line

    @property
    def cards(self) -> list[PendingCard]:
        """The pending proposal cards, newest first."""
        return [self.pending.widgets[k] for k in self.pending.keys]  # type: ignore[misc]

    @property
    def lines(self) -> list[SymbolLine]:
        return [self.symbols.widgets[k] for k in self.symbols.keys]  # type: ignore[misc]

    @property
    def history_lines(self) -> list[HistoryLine]:
        return [self.history.widgets[k] for k in self.history.keys]  # type: ignore[misc]

    def card_for(self, proposal_id: str) -> PendingCard | None:
        return self.pending.widgets.get(proposal_id)  # type: ignore[return-value]

    # ----- the trader's choices ---------------------------------------------------------------------------------
    def select(self, proposal_id: str) -> None:
        self.selected = proposal_id
        self.refresh()

    def symbol_clicked(self, symbol: str) -> None:
        self.symbol_chosen.emit(symbol)

    def target(self) -> tuple[Proposal | None, str]:
        """What A / R / M act on: the target of the board on screen (the highlighted card), never one worked out
        afresh at the key press; a proposal that replaced it since the last refresh has not been seen. If the
        highlighted proposal is no longer pending, nothing, with why; the board is redrawn at once."""
        board = self.board
        if board is None:
            return None, f"no pending proposal for {self.symbol}"
        if board.target is None:
            return None, board.target_why
        p = self._book.proposals.get(board.target)
        if p is not None and p.status is ProposalStatus.PENDING:
            return p, board.target_why
        self.refresh()
        if p is None:
            return None, "the highlighted proposal is gone: nothing sent, look again"
        what = f"{p.action.value} {p.decision.symbol}"
        reason = f" ({p.reason})" if p.reason else ""
        return None, f"the highlighted proposal {what} is {p.status.value.lower()}{reason}: nothing sent, look again"

    def ask_now(self) -> None:
        self.service.ask_now(self.symbol)

    # ----- refresh ----------------------------------------------------------------------------------------------
    def now(self) -> float:
        return self._book.clock() if self.desk is not None else time.monotonic()

    def make_board(self, now: float | None = None) -> DecisionBoard:
        desk = self.desk
        return decision_board(
            self.service, self._book, self._instruments, self.now() if now is None else now,
            symbols=self.service.market.symbols, screen_symbol=self.symbol, selected=self.selected,
            order_of=desk.implied_edits if desk is not None else None,
            price_of=desk.last_price if desk is not None else None)

    def refresh(self) -> None:
        self._refresh_model_state()
        board = self.make_board()
        self.board = board
        _set(self.cache_label, board.cache_line)
        new = self.pending.sync(board.keys[0])
        self.symbols.sync(board.keys[1])
        self.history.sync(board.keys[2])
        n = len(board.pending)
        _set(self.pending_header, f"PENDING · {n}" if n else "PENDING · none")
        for row in board.pending:
            self.pending.widgets[row.key].show_row(row, row.key == board.target)  # type: ignore[attr-defined]
        hint = "" if board.target is not None or not n else f"A / R / M: {board.target_why} — click a card to choose it"
        _set(self.target_hint, hint)
        self.target_hint.setVisible(bool(hint))
        for row in board.symbols:
            self.symbols.widgets[row.key].show_row(row, row.symbol == self.symbol)  # type: ignore[attr-defined]
        for row in board.history:
            self.history.widgets[row.key].show_row(row)  # type: ignore[attr-defined]
        if self.selected is not None and self.selected not in self.pending.widgets:
            self.selected = None  # reviewed or expired: nothing selected any more
        for key in new:
            if key not in self._announced:
                self._announced.add(key)
                self._flash(key)
                self.proposal_arrived.emit(key)

    def _flash(self, key: str) -> None:
        card = self.pending.widgets.get(key)
        if card is None:
            return
        card.flash(True)  # type: ignore[attr-defined]

        def off() -> None:
            c = self.pending.widgets.get(key)
            if c is not None:
                c.flash(False)  # type: ignore[attr-defined]

        QtCore.QTimer.singleShot(theme.FLASH_MS, self, off)

    def _refresh_model_state(self) -> None:
        svc = self.service
        if svc.version == self._version:
            return
        self._version = svc.version
        p = svc.provider
        kind = {"offline": "OFFLINE RULES", "local": "LOCAL"}.get(p.name, "MODEL")
        _set(self.model_label, f"{kind}: {p.model}")
        self.model_label.setToolTip(provider_tooltip(p))
        state = svc.model_state
        loading = getattr(p, "status", None) == "loading"  # the local model's server is still starting
        _set(self.state_label, "LOADING" if loading else state.value)
        _set_prop(self.state_label, "level", "bad" if state is ModelState.UNAVAILABLE else "ok")
