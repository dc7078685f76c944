"""The decision panel: proposal cards, newest first, each with its cache badge; "Ask now"; cache savings on top.

Model text is shown as plain text, never rich text: a rationale that contains markup or instructions is displayed
inertly, character for character.
"""

from __future__ import annotations

import datetime as dt
import re

from PySide6 import QtCore, QtWidgets

from app.llm.local import TOOLTIP, provider_tooltip
from app.llm.schema import Action, CacheStatus, Decision
from app.llm.service import DecisionService, ModelState
from app.market.instruments import Instrument, defaults_for

MAX_CARDS = 60

ACTION_LEVEL = {Action.BUY: "buy", Action.SELL: "sell", Action.HOLD: "hold", Action.CLOSE: "close"}
BADGE_TIPS = {
    CacheStatus.HIT: "Served from the cache: the very same prompt was answered before",
    CacheStatus.SIMILAR: "Served from the cache: every feature within tolerance of a stored answer",
    CacheStatus.MISS: "A fresh answer from the model",
    CacheStatus.OFFLINE: "The built-in offline rules, not a language model",
    CacheStatus.ERROR: "The request failed; this is not a proposal",
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


def _label(text: str, name: str | None = None, wrap: bool = False) -> QtWidgets.QLabel:
    lab = QtWidgets.QLabel(wrappable(text) if wrap else text)
    lab.setTextFormat(QtCore.Qt.TextFormat.PlainText)
    lab.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
    lab.setWordWrap(wrap)
    if name:
        lab.setObjectName(name)
    return lab


def _badge_text(d: Decision) -> str:
    m = d.meta
    text = m.cache_status.value
    if m.cache_status in (CacheStatus.HIT, CacheStatus.SIMILAR) and m.cache_age_s is not None:
        text += f" · {m.cache_age_s:.0f}s old"
    if m.cache_status is CacheStatus.SIMILAR and m.cache_distance is not None:
        text += f" · d={m.cache_distance:.2f}"
    return text


class DecisionCard(QtWidgets.QFrame):
    def __init__(self, d: Decision, proposal=None, actions=None, parent: QtWidgets.QWidget | None = None,
                 instrument: Instrument | None = None) -> None:
        super().__init__(parent)
        self.decision = d
        self.proposal = proposal
        self.setObjectName("decisionCard")
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(8, 6, 8, 6)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(2)
        when = dt.datetime.fromtimestamp(d.state_ms / 1000).strftime("%H:%M:%S") if d.state_ms else "—"
        b = d.body
        if b is None:
            self.action_label = _label("ERROR", "cardAction")
            self.action_label.setProperty("level", "error")
        else:
            self.action_label = _label(b.action.value, "cardAction")
            self.action_label.setProperty("level", ACTION_LEVEL[b.action])
        head = _label(f"{d.symbol} · {d.timeframe} · {when}", "cardMuted")
        self.badge = _label(_badge_text(d), "cardBadge")
        self.badge.setProperty("status", d.meta.cache_status.value)
        self.badge.setToolTip(BADGE_TIPS[d.meta.cache_status])
        grid.addWidget(self.action_label, 0, 0)
        grid.addWidget(head, 0, 1)
        grid.addWidget(self.badge, 0, 2, QtCore.Qt.AlignmentFlag.AlignRight)
        grid.setColumnStretch(1, 1)
        if b is not None and b.action is Action.HOLD:
            # HOLD carries no order: one line of reasoning keeps the panel dense.
            head.setText(f"{head.text()} · conf {b.confidence:.2f}")
            self.rationale = _label(b.rationale, "cardRationale", wrap=True)
        elif b is not None:
            parts = [f"size {b.size_pct:g}%", f"conf {b.confidence:.2f}"]
            if b.limit_price is not None:
                # In the symbol's precision (XRP's 0.6012, not 0.60); unknown filters: five significant digits.
                inst = instrument or defaults_for(d.symbol, b.limit_price)
                parts.insert(1, f"limit {inst.fmt_price(b.limit_price)}")
            if b.stop_loss_pct is not None:
                parts.append(f"SL {b.stop_loss_pct:g}%")
            if b.take_profit_pct is not None:
                parts.append(f"TP {b.take_profit_pct:g}%")
            grid.addWidget(_label("   ".join(parts), "cardNumbers"), 1, 0, 1, 3)
            self.rationale = _label(b.rationale, "cardRationale", wrap=True)
        else:
            self.rationale = _label(d.meta.error or "unknown error", "cardRationale", wrap=True)
        grid.addWidget(self.rationale, 2, 0, 1, 3)
        m = d.meta
        tokens = f" · {m.prompt_tokens + m.completion_tokens} tok" if m.prompt_tokens or m.completion_tokens else ""
        cost = f" · ${m.cost_usd:.4f}" if m.cost_usd else ""
        model = f"LOCAL {m.model}" if m.provider == "local" else m.model  # the tiny local model says so
        self.model_line = _label(f"{model} · {m.prompt_version} · {m.latency_ms:,.0f} ms{tokens}{cost}", "cardMuted")
        if m.provider == "local":
            self.model_line.setToolTip(TOOLTIP)
        grid.addWidget(self.model_line, 3, 0, 1, 3)
        self.status_label: QtWidgets.QLabel | None = None
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        if proposal is not None and actions is not None:
            row = QtWidgets.QHBoxLayout()
            for name, slot, tip in (("Approve", actions.approve, "A"), ("Reject", actions.reject, "R"),
                                    ("Modify", actions.modify, "M")):
                b = QtWidgets.QPushButton(name)
                b.setObjectName(f"card{name}")
                b.setToolTip(f"{name} this proposal (key {tip} acts on the newest pending one)")
                b.clicked.connect(lambda _=False, slot=slot: slot(proposal))
                row.addWidget(b)
                self.buttons[name] = b
            self.status_label = _label("", "cardCountdown")
            row.addWidget(self.status_label, 1, QtCore.Qt.AlignmentFlag.AlignRight)
            grid.addLayout(row, 4, 0, 1, 3)

    def update_status(self, now: float) -> None:
        """Countdown while pending; the outcome once reviewed (buttons then disabled)."""
        p = self.proposal
        if p is None or self.status_label is None:
            return
        pending = p.status.value == "PENDING"
        text = f"expires in {p.remaining_s(now):.0f}s" if pending else p.status.value
        if not pending and p.reason:
            text += f" · {p.reason}"
        if self.status_label.text() != text:
            self.status_label.setText(text)
            for b in self.buttons.values():
                b.setEnabled(pending)


class DecisionsPanel(QtWidgets.QWidget):
    def __init__(self, service: DecisionService, symbol: str, desk=None, actions=None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self.desk = desk
        self.actions = actions
        self.symbol = symbol
        self._seen = 0  # decisions already turned into cards
        self._version = -1
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(6)
        top = QtWidgets.QHBoxLayout()
        self.model_label = _label("", "modelLabel")
        self.state_label = _label("", "modelState")
        self.ask_button = QtWidgets.QPushButton("Ask now")
        self.ask_button.setObjectName("askNow")
        self.ask_button.setToolTip("Ask for a decision on the current market now")
        self.ask_button.clicked.connect(self.ask_now)
        top.addWidget(self.model_label, 1)
        top.addWidget(self.state_label)
        top.addWidget(self.ask_button)
        outer.addLayout(top)
        self.cache_label = _label("", "cacheStats", wrap=True)
        outer.addWidget(self.cache_label)
        self._cards = QtWidgets.QVBoxLayout()
        self._cards.setSpacing(6)
        self._cards.addStretch(1)
        holder = QtWidgets.QWidget()
        holder.setObjectName("cardHolder")
        holder.setLayout(self._cards)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # cards wrap instead
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setWidget(holder)
        outer.addWidget(scroll, 1)
        self.refresh()

    @property
    def cards(self) -> list[DecisionCard]:
        out = []
        for i in range(self._cards.count()):
            w = self._cards.itemAt(i).widget()
            if isinstance(w, DecisionCard):
                out.append(w)
        return out

    def ask_now(self) -> None:
        self.service.ask_now(self.symbol)

    def refresh(self) -> None:
        if self.desk is not None:
            now = self.desk.proposals.clock()
            for card in self.cards:
                if card.proposal is not None:
                    card.update_status(now)
        svc = self.service
        if svc.version == self._version:
            return
        self._version = svc.version
        p = svc.provider
        kind = {"offline": "OFFLINE RULES", "local": "LOCAL"}.get(p.name, "MODEL")
        self.model_label.setText(f"{kind}: {p.model}")
        self.model_label.setToolTip(provider_tooltip(p))
        state = svc.model_state
        loading = getattr(p, "status", None) == "loading"  # the local model's server is still starting
        self.state_label.setText("LOADING" if loading else state.value)
        self.state_label.setProperty("level", "bad" if state is ModelState.UNAVAILABLE else "ok")
        self.state_label.style().unpolish(self.state_label)
        self.state_label.style().polish(self.state_label)
        self.cache_label.setText(self._cache_text())
        fresh = min(svc.recorded - self._seen, len(svc.decisions))
        if fresh > 0:
            for d in list(svc.decisions)[len(svc.decisions) - fresh:]:
                proposal = self.desk.proposals.for_decision(d) if self.desk is not None else None
                instrument = self.desk.instruments.get(d.symbol) if self.desk is not None else None
                card = DecisionCard(d, proposal, self.actions, instrument=instrument)
                if proposal is not None:
                    card.update_status(self.desk.proposals.clock())
                self._cards.insertWidget(0, card)
        self._seen = svc.recorded
        while len(self.cards) > MAX_CARDS:
            last = self.cards[-1]
            self._cards.removeWidget(last)
            last.deleteLater()

    def _cache_text(self) -> str:
        c = self.service.cache
        if c is None:
            if self.service.provider.name == "offline":
                return "Cache: not used for the offline rules (they answer in microseconds)."
            return "Cache: off."
        s = c.stats
        audit = (f" · audit agreement {s.agreement_rate:.0%} of {s.audits}" if s.audits
                 else " · audit: no samples yet")
        return (f"Cache: {s.hit_rate:.0%} served ({s.hits} hit, {s.similar} similar, {s.coalesced} shared, "
                f"{s.misses} miss) · saved {s.latency_saved_ms / 1000:,.1f} s of model time, "
                f"{s.tokens_saved:,} tokens, ${s.cost_saved_usd:.4f}{audit}")
