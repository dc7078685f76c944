"""The settings dialog: every setting of the file, grouped in tabs, checked as you type.

After each edit the dialog builds a candidate ``Settings`` with ``Settings.model_validate`` (the same rules the
file is read with), shows each field's error beside it and keeps Save disabled while anything is invalid. Save
writes the file with ``save_settings``; the running terminal keeps its settings, so the dialog says plainly that
the changes take effect on the next start. The model's API key is never a setting: the key field hands it to the
``secrets`` object (OS keyring, or memory for this run) and only says where the current key comes from; so do the
exchanges' key and secret pairs on the Live trading tab (``app.ui.exchange_keys``).
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from PySide6 import QtCore, QtWidgets

from app.config import HOTKEY_LABELS, PER_RUN_FIELDS, Settings
from app.llm.cache import DEFAULT_TOLERANCES, FEATURE_NAMES
from app.market.candles import TIMEFRAMES
from app.settings_store import HELP, SECTIONS, save_settings
from app.ui.exchange_keys import ExchangeKeys

LLM_KEY = "llm_api_key"
LLM_KEY_ENV = "OPENAI_API_KEY"

LABELS: dict[str, str] = {
    "exchange": "Exchange", "sim_protocol": "Built-in protocol", "symbol": "Symbol at start",
    "symbols": "Feed symbols", "timeframe": "Chart timeframe", "history_bars": "History bars",
    "candle_capacity": "Candle capacity", "stale_after_s": "Stale after (s)", "sim_port": "Built-in port",
    "sim_trades_per_s": "Built-in trades/s", "llm_url": "Endpoint URL", "llm_model": "Model",
    "llm_timeout_s": "Request timeout (s)", "llm_max_retries": "Retries", "decision_timeframe": "Decide every",
    "decision_timeout_s": "Decision timeout (s)", "cache_enabled": "Cache model answers",
    "cache_ttl_s": "Lifetime (s)", "cache_max_entries": "Max entries", "cache_tolerances": "Tolerances",
    "starting_cash": "Starting cash", "maker_fee": "Maker fee", "taker_fee": "Taker fee",
    "max_order_notional": "Max order value", "max_position_value": "Max position value",
    "max_order_value_by_symbol": "Max order value per symbol",
    "max_position_value_by_symbol": "Max position value per symbol",
    "auto_approve_min_confidence": "Auto-approve min confidence",
    "auto_approve_max_order_value": "Auto-approve max order value",
    "max_open_orders": "Max open orders", "price_band_pct": "Price band (%)", "daily_loss_limit": "Daily loss limit",
    "proposal_expiry_s": "Proposal expiry (s)", "max_drift_pct": "Max drift (%)", "auto_approve": "Auto-approve",
    "journal_path": "Journal file", "ui_refresh_hz": "Chart refresh (Hz)", "perf_thresholds_ms": "p99 thresholds (ms)",
    "theme": "Theme", "live_trading": "Live trading (real orders)", "live_testnet": "On the testnet (play money)",
    "sim_process": "Built-in exchange in its own process", "decision_source": "Without an endpoint",
    "local_model_threads": "Local model threads", "decision_interval_s": "Ask every (s)",
    "cache_price_band_atr": "Price band (ATRs)", "sound_on_proposal": "Sound on a new proposal",
    "hotkeys": "Keyboard shortcuts",
}
# Entries of tables whose keys are not words a trader reads: the hotkeys' actions.
ENTRY_LABELS: dict[str, dict[str, str]] = {
    "hotkeys": HOTKEY_LABELS,
    "cache_tolerances": {
        "ret_1": "Return, last bar (%)", "ret_5": "Return, 5 bars (%)", "ret_15": "Return, 15 bars (%)",
        "ret_60": "Return, 60 bars (%)", "ema_spread_pct": "EMA fast vs slow (%)", "rsi": "RSI",
        "atr_pct": "ATR (% of price)", "vwap_dist_pct": "Distance from VWAP (%)", "volume_ratio": "Volume ratio",
        "spread_bps": "Bid/ask spread (bps)", "move_pct": "Move of the forming bar (%)",
    },
    "perf_thresholds_ms": {
        "loop_lag": "Event-loop lag", "ui_frame": "UI frame", "receive_to_bus": "Receive to bus",
        "candle_update": "Candle update", "model_miss": "Model answer (not cached)",
        "approve_to_fill": "Approve to fill", "exchange_to_receive": "Exchange to receive",
    },
}
EDITOR_MIN_WIDTH = 260
_PLACEHOLDERS = {"llm_url": "empty: offline rules", "journal_path": "empty: user data directory",
                 "symbols": "comma separated; empty: default set"}


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


def key_source_text(secrets: Any) -> str:
    """Where the model's API key comes from, in words; never the key."""
    if secrets is None:
        return "key storage is not available here"
    source = secrets.source(LLM_KEY)
    # backend_problem is already a sentence for the trader (what failed, and that keys stay in memory).
    problem = secrets.backend_problem or "No OS keyring is available: a key saved here is kept in memory only."
    if source == "env":
        return f"from {LLM_KEY_ENV} environment variable (it wins over a key saved here)"
    if source == "keyring":
        return "stored in the OS keyring"
    if source == "memory":
        return f"in memory only for this run. {problem}" if not secrets.backend_ok else "in memory only for this run"
    if not secrets.backend_ok:
        return f"not set. {problem}"
    return "not set; a key saved here goes to the OS keyring"


class SettingsDialog(QtWidgets.QDialog):
    """Edit the settings file at ``path``. Give it the file's settings (``load_settings(path).settings``), not
    the run's, or this run's command-line flags would be saved into the file."""

    saved = QtCore.Signal(object)  # the Settings just written
    key_saved = QtCore.Signal()  # a new API key was stored (even if writing the file then failed)

    def __init__(self, settings: Settings, path: Path, secrets: Any = None,
                 parent: QtWidgets.QWidget | None = None, *, mode_text: str = "PAPER",
                 overridden: dict[str, str] | None = None) -> None:
        """``mode_text``: where this run's orders go ("PAPER", "LIVE · Binance testnet"), shown on the Live
        trading tab: a change there applies from the next start, never to the running session. ``overridden``:
        settings this run's command-line flags override (field -> "--model gpt-4o"): the dialog says so, since
        it shows the file's values, not the ones in use."""
        super().__init__(parent)
        self.mode_text = mode_text
        self.overridden = dict(overridden or {})
        self.name_labels: dict[str, QtWidgets.QLabel] = {}
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        self.original = settings
        self.path = Path(path)
        self.secrets = secrets
        self.candidate: Settings | None = settings
        self.errors: dict[str, str] = {}
        self._getters: dict[str, Any] = {}  # key ("name" or "name.entry") -> () -> raw value for validation
        self.editors: dict[str, QtWidgets.QWidget] = {}
        self.error_labels: dict[str, QtWidgets.QLabel] = {}

        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        outer.setSpacing(6)
        self.flags_note = QtWidgets.QLabel(self._flags_text())
        self.flags_note.setObjectName("flagOverrides")
        self.flags_note.setWordWrap(True)
        self.flags_note.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.flags_note.setVisible(bool(self.overridden))
        outer.addWidget(self.flags_note)
        self.tabs = QtWidgets.QTabWidget()
        for title, names in SECTIONS:
            page = QtWidgets.QWidget()
            grid = QtWidgets.QGridLayout(page)
            grid.setContentsMargins(6, 6, 6, 6)
            grid.setHorizontalSpacing(8)
            grid.setVerticalSpacing(3)
            grid.setColumnStretch(2, 1)
            for name in names:
                self._add_field(grid, name)
            if title == "Model":
                self._add_key_row(grid)
            if title == "Live trading":
                self._add_live_rows(grid)
            grid.setRowStretch(grid.rowCount(), 1)
            self.tabs.addTab(page, title.replace("&", "&&"))  # "&" alone would make a shortcut
        outer.addWidget(self.tabs)

        self.general_error = self._error_label()  # errors no single field explains
        outer.addWidget(self.general_error)
        self.summary = QtWidgets.QLabel("")
        self.summary.setObjectName("cardMuted")
        self.summary.setWordWrap(True)
        outer.addWidget(self.summary)
        self.message = QtWidgets.QLabel("")
        self.message.setObjectName("deskMessage")
        self.message.setWordWrap(True)
        self.message.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        outer.addWidget(self.message)

        buttons = QtWidgets.QHBoxLayout()
        where = QtWidgets.QLabel(str(self.path))
        where.setObjectName("cardMuted")
        where.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons.addWidget(where, 1)
        self.save_button = QtWidgets.QPushButton("Save")
        self.save_button.setObjectName("saveSettings")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)
        self.close_button = QtWidgets.QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.close_button)
        outer.addLayout(buttons)
        self.validate()

    # ----- building -----------------------------------------------------------------------------------------
    def _flags_text(self) -> str:
        if not self.overridden:
            return ""
        what = ", ".join(f"{LABELS.get(n, n)} ({flag})" for n, flag in self.overridden.items())
        return (f"Overridden by command-line flags in this run: {what}. This dialog shows and saves the file's "
                "values, which apply when the terminal starts without those flags.")

    def _error_label(self) -> QtWidgets.QLabel:
        label = QtWidgets.QLabel("")
        label.setObjectName("formError")
        label.setWordWrap(True)
        label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        label.setProperty("level", "ok")
        return label

    def _row(self, grid: QtWidgets.QGridLayout, key: str, label: str, editor: QtWidgets.QWidget, tip: str) -> None:
        row = grid.rowCount()
        flag = self.overridden.get(key)
        if flag is not None:  # the value in use now is the flag's, not this one
            label = f"{label} ⚑"
            tip = f"Overridden in this run by {flag}; this is the file's value. {tip}".strip()
        name = QtWidgets.QLabel(label)
        name.setToolTip(tip)
        self.name_labels[key] = name
        editor.setToolTip(tip)
        editor.setObjectName(f"setting_{key.replace('.', '__')}")
        error = self._error_label()
        if not isinstance(editor, QtWidgets.QCheckBox):
            editor.setMinimumWidth(EDITOR_MIN_WIDTH)  # room for a URL, a path or a placeholder in full
        grid.addWidget(name, row, 0)
        grid.addWidget(editor, row, 1)
        grid.addWidget(error, row, 2)
        self.editors[key] = editor
        self.error_labels[key] = error

    def _add_field(self, grid: QtWidgets.QGridLayout, name: str) -> None:
        value = getattr(self.original, name)
        info = Settings.model_fields[name]
        if isinstance(value, dict):  # a table: one line per entry
            self._add_table(grid, name, value)
            return
        choices: tuple[str, ...] = ()
        if typing.get_origin(info.annotation) is typing.Literal:
            choices = tuple(map(str, typing.get_args(info.annotation)))
        elif name in ("timeframe", "decision_timeframe"):
            choices = tuple(TIMEFRAMES)
        editor: QtWidgets.QWidget
        if choices:
            combo = QtWidgets.QComboBox()
            combo.addItems(list(choices))
            combo.setCurrentText(str(value))
            combo.currentTextChanged.connect(self.validate)
            self._getters[name] = combo.currentText
            editor = combo
        elif isinstance(value, bool):
            box = QtWidgets.QCheckBox()
            box.setChecked(value)
            box.toggled.connect(self.validate)
            self._getters[name] = box.isChecked
            editor = box
        else:
            line = QtWidgets.QLineEdit(_text(value))
            line.setPlaceholderText(_PLACEHOLDERS.get(name, ""))
            line.textChanged.connect(self.validate)
            if name == "symbols":
                self._getters[name] = lambda line=line: [x.strip() for x in line.text().split(",") if x.strip()]
            elif name in ("llm_url", "journal_path"):
                self._getters[name] = lambda line=line: line.text().strip() or None
            else:
                self._getters[name] = line.text
            editor = line
        self._row(grid, name, LABELS.get(name, name), editor, HELP.get(name, ""))

    def _add_table(self, grid: QtWidgets.QGridLayout, name: str, value: dict[str, float]) -> None:
        hint = (" (1 s-bar units, scaled to the decision timeframe; empty: default)"
                if name == "cache_tolerances" else " (empty: default)")
        heading = QtWidgets.QLabel(LABELS.get(name, name) + hint)
        heading.setObjectName("cardMuted")
        heading.setToolTip(HELP.get(name, ""))
        row = grid.rowCount()
        grid.addWidget(heading, row, 0, 1, 2)
        self.error_labels[name] = self._error_label()  # errors on the table as a whole
        grid.addWidget(self.error_labels[name], row, 2)
        if name == "cache_tolerances":
            defaults = {n: DEFAULT_TOLERANCES[n] for n in FEATURE_NAMES}
            entries = list(FEATURE_NAMES)
        else:
            defaults = dict(getattr(Settings(), name))
            entries = [*value, *(k for k in defaults if k not in value)]
        for entry in entries:
            line = QtWidgets.QLineEdit(_text(value[entry]) if entry in value else "")
            line.setPlaceholderText(f"default {_text(defaults[entry])}" if entry in defaults else "")
            line.textChanged.connect(self.validate)
            self._getters[f"{name}.{entry}"] = line.text
            words = ENTRY_LABELS.get(name, {}).get(entry)
            self._row(grid, f"{name}.{entry}", f"  {words or entry}", line,
                      f"{entry}: {HELP.get(name, '')}" if words else HELP.get(name, ""))

    def _add_live_rows(self, grid: QtWidgets.QGridLayout) -> None:
        """This run's mode, and each exchange's keys: entered, cleared, and where the ones in use come from."""
        row = grid.rowCount()
        grid.addWidget(QtWidgets.QLabel("This run"), row, 0)
        self.mode_label = QtWidgets.QLabel(self.mode_text)
        self.mode_label.setObjectName("brokerMode")
        self.mode_label.setProperty("mode", "LIVE" if self.mode_text.startswith("LIVE") else "PAPER")
        grid.addWidget(self.mode_label, row, 1)
        note = QtWidgets.QLabel("changes apply at the next start; --live, --testnet / --mainnet choose for one run")
        note.setObjectName("cardMuted")
        note.setWordWrap(True)
        grid.addWidget(note, row, 2)
        # Each exchange's key and secret: to the OS keyring on Save (never this file), Clear deletes at once.
        self.exchange_keys = ExchangeKeys(grid, self.secrets, self.validate, lambda text, ok: self._show(text, ok))
        self.exchange_key_labels = self.exchange_keys.source_labels

    def _add_key_row(self, grid: QtWidgets.QGridLayout) -> None:
        self.api_key = QtWidgets.QLineEdit()
        self.api_key.setEchoMode(QtWidgets.QLineEdit.EchoMode.Password)
        self.api_key.setObjectName("apiKey")
        self.api_key.setPlaceholderText("a new key replaces the current one")
        self.api_key.setMinimumWidth(EDITOR_MIN_WIDTH)
        self.api_key.setEnabled(self.secrets is not None)
        self.api_key.textChanged.connect(self.validate)
        row = grid.rowCount()
        grid.addWidget(QtWidgets.QLabel("API key"), row, 0)
        grid.addWidget(self.api_key, row, 1)
        self.api_key_source = QtWidgets.QLabel(key_source_text(self.secrets))
        self.api_key_source.setObjectName("cardMuted")
        self.api_key_source.setWordWrap(True)
        grid.addWidget(self.api_key_source, row, 2)

    # ----- validation ---------------------------------------------------------------------------------------
    def _raw(self) -> dict[str, Any]:
        data = self.original.model_dump()
        tables: dict[str, dict[str, Any]] = {}
        defaults = Settings()
        for key, get in self._getters.items():
            name, _, entry = key.partition(".")
            if not entry:
                data[name] = get()
                continue
            table = tables.setdefault(name, {})
            text = get().strip()
            if text:
                table[entry] = text
            elif entry in getattr(defaults, name):  # empty: the default (none for a tolerance override)
                table[entry] = getattr(defaults, name)[entry]
        data.update(tables)
        return data

    def validate(self) -> bool:
        """Rebuild the candidate from the fields; show each error beside its field. True when all are valid."""
        errors: dict[str, str] = {}
        general: list[str] = []
        try:
            self.candidate = Settings.model_validate(self._raw())
        except ValidationError as exc:
            self.candidate = None
            for err in exc.errors():
                loc = [str(x) for x in err["loc"]]
                msg = str(err["msg"]).removeprefix("Value error, ").replace("Input should be ", "must be ")
                key = ".".join(loc[:2]) if ".".join(loc[:2]) in self.error_labels else (loc[0] if loc else "")
                if key in self.error_labels:
                    errors.setdefault(key, msg)
                else:
                    general.append(f"{'.'.join(loc) or 'settings'}: {msg}")
        exchange_keys = getattr(self, "exchange_keys", None)
        half_pairs = exchange_keys.problems() if exchange_keys is not None else {}
        self.errors = errors
        for key, label in self.error_labels.items():
            _set_level(label, errors.get(key, ""), "bad" if key in errors else "ok")
        _set_level(self.general_error, "\n".join(general), "bad" if general else "ok")
        self.general_error.setVisible(bool(general))
        ok = self.candidate is not None and not half_pairs
        self.save_button.setEnabled(ok)
        if ok:
            changed = self.changed_fields()
            if changed:
                self.summary.setText(f"Changed: {', '.join(changed)}. Changes take effect the next time the "
                                     "terminal starts.")
            else:
                self.summary.setText("No changes.")
        else:
            self.summary.setText(f"{len(errors) + len(general) + len(half_pairs)} invalid: fix them to save.")
        return ok

    def changed_fields(self) -> list[str]:
        """Labels of the settings the candidate changes, in tab order."""
        if self.candidate is None:
            return []
        names = [n for _, names in SECTIONS for n in names if n not in PER_RUN_FIELDS]
        changed = [LABELS.get(n, n) for n in names if getattr(self.candidate, n) != getattr(self.original, n)]
        if getattr(self, "api_key", None) is not None and self.api_key.text():
            changed.append("API key")
        if getattr(self, "exchange_keys", None) is not None:
            changed += self.exchange_keys.pending()
        return changed

    # ----- saving -------------------------------------------------------------------------------------------
    def save(self) -> bool:
        if not self.validate() or self.candidate is None:
            return False
        changed = self.changed_fields()
        notes: list[str] = []
        key = self.api_key.text()
        if key and self.secrets is not None:
            try:
                where = self.secrets.set(LLM_KEY, key)
            except Exception as exc:  # a keyring failure must not lose the rest of the save
                notes.append(f"the API key could not be stored ({type(exc).__name__}: {exc})")
            else:
                self.api_key.clear()
                if self.secrets.source(LLM_KEY) == "env":
                    notes.append(f"API key stored, but {LLM_KEY_ENV} is set and is the one used")
                elif where == "keyring":
                    notes.append("API key stored in the OS keyring and used from now on")
                else:
                    notes.append(f"API key used from now on but kept in memory only (no keyring backend): it is "
                                 f"gone when the terminal exits; set {LLM_KEY_ENV} to keep a key across runs")
                self.key_saved.emit()
            self.api_key_source.setText(key_source_text(self.secrets))
        notes += self.exchange_keys.store()
        settings = self.candidate
        try:
            save_settings(settings, self.path)
        except OSError as exc:
            self._show(" ".join([f"Could not write {self.path}: {exc.strerror or exc}.",
                                 *(n[:1].upper() + n[1:] + "." for n in notes)]), ok=False)
            return False
        self.original = settings
        what = f"Takes effect on the next start: {', '.join(changed)}." if changed else "No changes."
        self._show(" ".join([f"Saved to {self.path}.", what, *(n[:1].upper() + n[1:] + "." for n in notes)]),
                   ok=not any("could not" in n for n in notes))
        self.validate()
        self.saved.emit(settings)
        return True

    def _show(self, text: str, ok: bool) -> None:
        _set_level(self.message, text, "ok" if ok else "bad")


def _set_level(label: QtWidgets.QLabel, text: str, level: str) -> None:
    label.setText(text)
    label.setToolTip(text)
    if label.property("level") != level:
        label.setProperty("level", level)
        label.style().unpolish(label)
        label.style().polish(label)
