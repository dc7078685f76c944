"""Settings: one pydantic model for everything configurable.

The file (TOML in the platformdirs config directory) is read and written by ``app.settings_store``; command-line
flags override it for one run (``app.__main__``); ``app.ui.settings_dialog`` edits it. ``PER_RUN_FIELDS`` are
never stored in the file. Secrets (API keys) are never settings: they live in the OS keyring or the environment.
"""

from __future__ import annotations

import math
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.market.candles import TIMEFRAMES

DEFAULT_SIM_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")

# The settings are read before the first window; the decision cache (app.llm.cache, with its decision schema and
# market features: ~30 ms of CPU at start-up) is imported only where a setting needs it, once the window is up. Its
# price band's default is therefore written here too: app.llm.cache.DEFAULT_PRICE_BAND_ATR is the value, and
# tests/test_startup_imports.py fails if the two differ.
CACHE_PRICE_BAND_ATR_DEFAULT = 0.75

# Options of one run (command-line flags), never read from or written to the settings file.
PER_RUN_FIELDS = frozenset({"replay", "replay_speed", "record_path", "ws_url", "rest_url"})


def _positive_finite(v: float) -> float:
    if not (v > 0 and math.isfinite(v)):
        raise ValueError("must be a positive number")
    return v


PositiveFinite = Annotated[float, AfterValidator(_positive_finite)]

# Chooses decision_source's default for a whole environment (a CI job, the test suite) without a settings file.
DECISION_SOURCE_ENV = "TRADING_TERMINAL_DECISIONS"


def _default_decision_source() -> str:
    return "rules" if os.environ.get(DECISION_SOURCE_ENV, "").strip().lower() == "rules" else "local"


def _symbol(v: str) -> str:
    v = v.strip().upper()
    if not v.isalnum():
        raise ValueError(f"symbol {v!r} must be letters and digits, like BTCUSDT")
    return v


SymbolKey = Annotated[str, AfterValidator(_symbol)]
PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]


# ---- trading hotkeys ---------------------------------------------------------------------------------------------
# Every key the terminal answers to, in one table: the window binds from it and Help > Keyboard shortcuts lists it.
# (action, group, what it does, default key). ``hotkeys`` in the settings file overrides single entries; an empty
# string leaves an action without a key.
HOTKEY_ACTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("buy_at_ask", "Trading", "Buy at the ask (the ticket's quantity)", "Ctrl+Shift+B"),
    ("sell_at_bid", "Trading", "Sell at the bid (the ticket's quantity)", "Ctrl+Shift+S"),
    ("cancel_all", "Trading", "Cancel all working orders (positions and their stops and targets stay)", "Ctrl+Shift+C"),
    ("flatten_all", "Trading", "Flatten all positions", "Ctrl+Shift+F"),
    ("kill_switch", "Trading", "Kill switch: cancel all, flatten, halt", "Ctrl+Shift+K"),
    ("approve", "Decisions", "Approve the highlighted proposal", "A"),
    ("reject", "Decisions", "Reject the highlighted proposal", "R"),
    ("modify", "Decisions", "Modify the highlighted proposal", "M"),
    ("ask_now", "Decisions", "Ask for a decision now", "Ctrl+Return"),
    ("follow_live_edge", "Chart", "Follow the live edge (newest candle)", "End"),
    *((f"timeframe_{tf}", "Chart", f"Chart timeframe {tf}", str(i)) for i, tf in enumerate(TIMEFRAMES, start=1)),
    ("settings", "Window", "Settings", "Ctrl+,"),
    ("keyboard_help", "Window", "Keyboard shortcuts (this list)", "F1"),
    ("quit", "Window", "Quit", "Ctrl+Q"),
)
DEFAULT_HOTKEYS: dict[str, str] = {name: key for name, _, _, key in HOTKEY_ACTIONS}
HOTKEY_LABELS: dict[str, str] = {name: label for name, _, label, _ in HOTKEY_ACTIONS}

_MODIFIERS = {"ctrl": "Ctrl", "control": "Ctrl", "shift": "Shift", "alt": "Alt", "meta": "Meta"}
_NAMED_KEYS = {k.lower(): k for k in (
    "Return", "Enter", "Esc", "Escape", "Tab", "Backspace", "Space", "Insert", "Del", "Delete", "Home", "End",
    "PgUp", "PgDown", "PageUp", "PageDown", "Left", "Right", "Up", "Down", "Pause", "Print",
)}
_PUNCTUATION = set("`-=[]\\;',./+*")


def parse_key(text: str) -> str:
    """A key sequence in Qt's portable text ("Ctrl+Shift+B", "F9", "End", "A"), canonical; "" for none.
    ValueError, in words, for what is not one key with optional modifiers (Qt is not imported here)."""
    text = text.strip()
    if not text:
        return ""
    parts = text.split("+")
    if text.endswith("++"):  # "Ctrl++": the plus key
        parts = [*text[:-2].split("+"), "+"] if text[:-2] else ["+"]
    *mods, key = [p.strip() for p in parts]
    seen = []
    for m in mods:
        canon = _MODIFIERS.get(m.lower())
        if canon is None:
            raise ValueError(f"{text!r}: {m!r} is not a modifier (Ctrl, Shift, Alt, Meta)")
        if canon in seen:
            raise ValueError(f"{text!r}: {canon} twice")
        seen.append(canon)
    lower = key.lower()
    if len(key) == 1 and (key.isalnum() or key in _PUNCTUATION):
        name = key.upper()
    elif lower in _NAMED_KEYS:
        name = _NAMED_KEYS[lower]
    elif lower[:1] == "f" and lower[1:].isdigit() and 1 <= int(lower[1:]) <= 35:
        name = f"F{int(lower[1:])}"
    else:
        raise ValueError(f"{text!r} is not a key sequence (examples: Ctrl+Shift+B, F9, End, A)")
    order = ["Ctrl", "Alt", "Shift", "Meta"]
    return "+".join([*sorted(seen, key=order.index), name])


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    exchange: Literal["sim", "binance", "binance-futures", "coinbase", "kraken"] = "sim"
    # The built-in exchange speaks Binance's protocol unless told otherwise (to exercise the other adapters).
    sim_protocol: Literal["binance", "binance-futures", "coinbase", "kraken"] = "binance"
    # --ws-url / --rest-url: the exchange's feed from another endpoint (testnet, proxy, recorder, test server); see
    # app.market.exchanges. Per run: a forgotten test port in the settings file would silently cut a later run off.
    ws_url: str | None = None
    rest_url: str | None = None
    symbol: str = "BTCUSDT"  # the one on screen at start
    # Every symbol the feed carries (one connection). Empty: five on the built-in exchange, the chosen one elsewhere.
    symbols: list[str] = Field(default_factory=list)
    timeframe: str = "1m"
    replay: Path | None = None
    replay_speed: float = Field(default=1.0, ge=0.0)
    record_path: Path | None = None  # --record: every received frame as "<receive_ns> <raw>" lines
    sim_port: int = Field(default=0, ge=0, le=65535)
    sim_trades_per_s: float = Field(default=20.0, gt=0.0)
    # Its own process keeps the exchange's work off the window's event loop; in-process is for tests and tools
    # that inspect or steer the simulator directly.
    sim_process: bool = True
    history_bars: int = Field(default=600, ge=0, le=1000)
    candle_capacity: int = Field(default=100_000, ge=1000)
    stale_after_s: float = Field(default=10.0, gt=0.0)
    ui_refresh_hz: float = Field(default=30.0, ge=1.0, le=120.0)
    # Decisions. No URL: the offline rules (labelled OFFLINE). The API key is never a setting: it comes from the
    # environment (OPENAI_API_KEY) or the OS keyring and stays in the provider.
    llm_url: str | None = None
    # Without llm_url: the embedded local model (app/llm/local.py; falls back to the rules if it cannot run) or
    # the offline rules. --model local / --model rules choose it for one run.
    decision_source: Literal["local", "rules"] = Field(default_factory=_default_decision_source)
    local_model_threads: int = Field(default=1, ge=1, le=64)
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = Field(default=20.0, gt=0.0, le=300.0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    decision_timeframe: str = "1m"
    decision_timeout_s: float = Field(default=30.0, gt=0.0, le=600.0)
    # Every symbol is asked this often (and at each bar close of decision_timeframe); the cache answers what has
    # not changed, so a short interval keeps decisions current without calling the model each time.
    decision_interval_s: float = Field(default=5.0, ge=0.5, le=3600.0)
    # Decision cache (models only; see app/llm/cache.py). cache_tolerances overrides single features, in the units
    # of DEFAULT_TOLERANCES (for TOLERANCE_TIMEFRAME bars); see decision_cache_tolerances for how they merge.
    cache_enabled: bool = True
    cache_ttl_s: float = Field(default=75.0, gt=0.0, le=3600.0)
    cache_max_entries: int = Field(default=5000, ge=1, le=1_000_000)
    cache_tolerances: dict[str, PositiveFinite] = Field(default_factory=dict)
    # A stored answer is served only while the price stays within this many ATRs of where it was asked.
    cache_price_band_atr: float = Field(default=CACHE_PRICE_BAND_ATR_DEFAULT, gt=0.0, le=100.0)
    # Live trading: orders go to the exchange account whose keys are in the environment or the OS keyring (never
    # this file), after a confirmation naming the exchange and the account (--confirm-live in scripted runs).
    # Off: paper. Without keys, with keys the exchange rejects, or declined: the terminal says why and runs paper.
    live_trading: bool = False
    # On the exchange's test network (Binance's spot testnet), with its own keys and play money. Off: MAINNET, real
    # money. Applies to live trading only.
    live_testnet: bool = True
    # Trading. The journal defaults to the platformdirs user data dir; a live session keeps its own beside it.
    journal_path: Path | None = None
    starting_cash: Decimal = Field(default=Decimal("10000"), gt=0)
    proposal_expiry_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    max_drift_pct: float = Field(default=0.5, gt=0.0, le=50.0)
    auto_approve: bool = False
    sound_on_proposal: bool = False  # a beep with each new proposal (the panel flashes either way)
    # Auto-approve's own limits, stricter than risk's: a proposal above the order value is scaled down to it.
    auto_approve_min_confidence: float = Field(default=0.75, ge=0.0, le=1.0)
    auto_approve_max_order_value: Decimal = Field(default=Decimal("1000"), gt=0)
    maker_fee: Decimal = Field(default=Decimal("0.001"), ge=0, le=Decimal("0.05"))
    taker_fee: Decimal = Field(default=Decimal("0.001"), ge=0, le=Decimal("0.05"))
    # Risk limits are money (quote currency), so one limit means the same for BTC and XRP; the tables override
    # them per symbol ({"XRPUSDT" = 500}).
    max_order_notional: Decimal = Field(default=Decimal("5000"), gt=0)
    max_position_value: Decimal = Field(default=Decimal("25000"), gt=0)
    max_order_value_by_symbol: dict[SymbolKey, PositiveDecimal] = Field(default_factory=dict)
    max_position_value_by_symbol: dict[SymbolKey, PositiveDecimal] = Field(default_factory=dict)
    max_open_orders: int = Field(default=10, ge=1)
    price_band_pct: Decimal = Field(default=Decimal("5"), gt=0)
    daily_loss_limit: Decimal = Field(default=Decimal("500"), ge=0)
    # p99 thresholds (ms) per performance stage: over one, the panel colours it and the status bar warns.
    perf_thresholds_ms: dict[str, PositiveFinite] = Field(default_factory=lambda: {
        "loop_lag": 5.0, "ui_frame": 16.0, "receive_to_bus": 2.0, "candle_update": 2.0,
        "model_miss": 10_000.0, "approve_to_fill": 1_000.0,
    })
    theme: Literal["dark", "light"] = "dark"
    # Trading hotkeys: action -> key ("Ctrl+Shift+B", "F9", "" for none); see HOTKEY_ACTIONS. An unknown action or
    # a key that does not parse falls back to its default (settings_store names it); one key for two actions is
    # refused.
    hotkeys: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_HOTKEYS))

    @field_validator("hotkeys")
    @classmethod
    def _valid_hotkeys(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = [k for k in v if k not in DEFAULT_HOTKEYS]
        if unknown:
            raise ValueError(f"unknown hotkey action {', '.join(map(repr, unknown))}: known are "
                             f"{', '.join(DEFAULT_HOTKEYS)}")
        keys = {**DEFAULT_HOTKEYS}
        problems = []
        for action, text in v.items():
            try:
                keys[action] = parse_key(str(text))
            except ValueError as exc:
                problems.append(f"{action}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        by_key: dict[str, list[str]] = {}
        for action, key in keys.items():
            if key:
                by_key.setdefault(key, []).append(action)
        dup = {k: a for k, a in by_key.items() if len(a) > 1}
        if dup:
            raise ValueError("; ".join(f"{k} is bound to both {' and '.join(a)}" for k, a in dup.items()))
        return keys

    @field_validator("cache_tolerances")
    @classmethod
    def _known_features(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:  # the usual case: nothing to check, and no need to import the cache before the first window
            return v
        from app.llm.cache import FEATURE_NAMES

        unknown = [k for k in v if k not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"unknown cache feature {', '.join(map(repr, unknown))}: known are "
                             f"{', '.join(FEATURE_NAMES)}")
        return v

    @field_validator("llm_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        # Only the form is checked: whether the endpoint answers is learnt at decision time (no network here).
        # Empty means none (TOML has no null).
        if v is None or not v.strip():
            return None
        v = v.strip()
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"model endpoint {v!r} must be an http:// or https:// URL with a host, "
                             "like http://127.0.0.1:11434/v1")
        return v

    @field_validator("journal_path")
    @classmethod
    def _expand_home(cls, v: Path | None) -> Path | None:
        return v.expanduser() if v is not None else v

    def decision_cache_tolerances(self) -> dict[str, float] | None:
        """Tolerances for DecisionCache. No override: None (DEFAULT_TOLERANCES scaled to each timeframe). With
        overrides: DEFAULT_TOLERANCES with the overridden features replaced, then scaled to the decision timeframe
        exactly as the defaults are (price-move features by sqrt(bar / TOLERANCE_TIMEFRAME)); the decision service
        asks on that timeframe only, so the cache sees no other."""
        if not self.cache_tolerances:
            return None
        from app.llm.cache import DEFAULT_TOLERANCES, tolerances_for

        return tolerances_for(self.decision_timeframe, {**DEFAULT_TOLERANCES, **self.cache_tolerances})

    @field_validator("symbol")
    @classmethod
    def _upper_symbol(cls, v: str) -> str:
        return _symbol(v)

    @field_validator("symbols")
    @classmethod
    def _upper_symbols(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(_symbol(s) for s in v))

    def feed_symbols(self) -> list[str]:
        """The symbols to subscribe to, the one on screen first."""
        chosen = self.symbols or (list(DEFAULT_SIM_SYMBOLS) if self.exchange == "sim" and self.replay is None else [])
        return list(dict.fromkeys([self.symbol, *chosen]))

    @field_validator("ws_url", "rest_url")
    @classmethod
    def _endpoint_url(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        schemes = ("ws://", "wss://") if info.field_name == "ws_url" else ("http://", "https://")
        if not v.startswith(schemes) or len(v) <= len(schemes[1]):
            raise ValueError(f"{v!r} is not a {' or '.join(s.rstrip(':/') for s in schemes)} URL")
        return v.rstrip("/")

    @field_validator("timeframe", "decision_timeframe")
    @classmethod
    def _known_timeframe(cls, v: str) -> str:
        if v not in TIMEFRAMES:
            raise ValueError(f"timeframe {v!r} is not one of {', '.join(TIMEFRAMES)}")
        return v
