"""The settings file: TOML in the platformdirs config directory, read and written here (no Qt, no network).

Reading never loses anything and never stops the terminal:
- no file: the defaults, no problem;
- a file that cannot be read, is not UTF-8 or is not valid TOML: a copy is kept (see ``keep_copy``) and every
  setting takes its default;
- a file with bad keys (wrong type, out of range, unknown name, a per-run option): a copy is kept, the bad keys
  take their defaults and every good key is kept. For tables (``perf_thresholds_ms``, ``cache_tolerances``) the
  unit is the entry: one bad threshold falls back alone, and entries the file leaves out keep their defaults.
Each problem names the file, the key and why (``ConfigProblem``). The file itself is left as it is: it is fixed by
the user or rewritten by the settings dialog.

Writing (``save_settings``) renders every setting, grouped as in the dialog, with a comment saying what it is;
settings at their default are written commented out (``# key = value``), so the file shows every option while a
later release can still change a default the user never chose. The text goes to a temporary file in the same
directory, is flushed to disk and then replaces the old file (``os.replace``), so a crash leaves the old file or
the new one, never half of one. Numbers are read with ``parse_float=Decimal`` and Decimals are written in their
own digits, so money settings come back exactly (``Decimal("0.001")`` stays ``0.001``). Secrets are never
settings and so never reach the file; ``PER_RUN_FIELDS`` (--replay, --speed, --record) are not written either.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from app.config import DEFAULT_HOTKEYS, PER_RUN_FIELDS, Settings, parse_key

APP_NAME = "ai-trading-terminal"
FILE_NAME = "settings.toml"

# The groups of the file and of the dialog's tabs, in order. Every field of Settings but PER_RUN_FIELDS is in one.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Market data", ("exchange", "sim_protocol", "symbol", "symbols", "timeframe", "history_bars",
                     "candle_capacity", "stale_after_s", "sim_port", "sim_trades_per_s", "sim_process")),
    ("Model", ("llm_url", "llm_model", "decision_source", "local_model_threads", "llm_timeout_s", "llm_max_retries",
               "decision_timeframe", "decision_interval_s", "decision_timeout_s")),
    ("Cache", ("cache_enabled", "cache_ttl_s", "cache_max_entries", "cache_tolerances", "cache_price_band_atr")),
    ("Live trading", ("live_trading", "live_testnet")),
    ("Risk & fees", ("starting_cash", "maker_fee", "taker_fee", "max_order_notional", "max_position_value",
                     "max_order_value_by_symbol", "max_position_value_by_symbol",
                     "max_open_orders", "price_band_pct", "daily_loss_limit", "proposal_expiry_s", "max_drift_pct",
                     "auto_approve", "auto_approve_min_confidence", "auto_approve_max_order_value", "journal_path")),
    ("Performance", ("ui_refresh_hz", "perf_thresholds_ms")),
    ("Appearance", ("theme", "sound_on_proposal")),
    ("Keys", ("hotkeys",)),
)

# One line on each setting: the comment in the file and the tooltip in the dialog.
HELP: dict[str, str] = {
    "exchange": "market data source: sim (built-in exchange), binance, binance-futures, coinbase or kraken (live, "
                "needs network)",
    "sim_protocol": "the protocol the built-in exchange speaks: binance, binance-futures, coinbase or kraken",
    "symbol": "the symbol on screen at start",
    "symbols": "every symbol the feed carries; empty: five on the built-in exchange, the chosen one elsewhere",
    "timeframe": "chart timeframe at start: 1s, 1m, 5m, 15m, 1h",
    "history_bars": "bars of history loaded at start (0-1000)",
    "candle_capacity": "candles kept in memory per symbol and timeframe",
    "stale_after_s": "seconds without a frame before the feed is marked STALE and reconnected",
    "sim_port": "port of the built-in exchange on 127.0.0.1 (0: a free one)",
    "sim_trades_per_s": "trades per second the built-in exchange makes",
    "sim_process": "run the built-in exchange in its own process, as a real exchange is (off: in the terminal's)",
    "llm_url": "OpenAI-compatible endpoint; empty: decision_source proposes",
    "llm_model": "model name at that endpoint",
    "decision_source": "without llm_url: local (a tiny local model, for trying the terminal, not for trading "
    "decisions) or rules (the offline rules, labelled OFFLINE)",
    "local_model_threads": "CPU threads of the local model (1 leaves the other core to the window)",
    "llm_timeout_s": "seconds one model request may take",
    "llm_max_retries": "retries of a failed model request",
    "decision_timeframe": "the bars decisions are made from; every symbol is also asked at each of their closes",
    "decision_interval_s": "seconds between asks for every symbol (0.5-3600); the cache answers what has not changed",
    "decision_timeout_s": "overall seconds a decision may take, retries included",
    "cache_enabled": "reuse a model answer while the market looks the same (never for the offline rules)",
    "cache_ttl_s": ("lifetime of a cached answer in seconds at 1m bars: x0.8-1.2 by the "
                    "answer's confidence, scaled with the bar length (x60 at 1h bars)"),
    "cache_max_entries": "cached answers kept; the least recently served goes first",
    "cache_price_band_atr": "a cached answer is served only while the price stays within this many ATRs of where "
                            "it was asked (above 0, at most 100)",
    "cache_tolerances": "per-feature tolerance overrides in 1m-bar units; features left out keep their defaults, "
                        "all are scaled to the decision timeframe",
    "live_trading": "send approved orders to the exchange account (keys from the environment or the OS keyring, "
                    "never this file), after a confirmation naming the exchange and account; off: paper",
    "live_testnet": "live trading on the exchange's test network with play money (Binance spot testnet); off: "
                    "MAINNET, real money",
    "starting_cash": "paper account cash before the first fill",
    "maker_fee": "maker fee as a fraction (0.001 = 0.1 %)",
    "taker_fee": "taker fee as a fraction (0.001 = 0.1 %)",
    "max_order_notional": "risk: largest order value in quote currency",
    "max_position_value": "risk: largest position value per symbol (|quantity| x price), in quote currency",
    "max_order_value_by_symbol": "risk: largest order value for one symbol, overriding max_order_notional "
                                 "(SYMBOL = value)",
    "max_position_value_by_symbol": "risk: largest position value for one symbol, overriding max_position_value "
                                    "(SYMBOL = value)",
    "max_open_orders": "risk: most working orders at once",
    "price_band_pct": "risk: a limit price may be at most this % from the market",
    "daily_loss_limit": "risk: past this day's loss only orders that reduce exposure pass",
    "proposal_expiry_s": "seconds a proposal waits for approval",
    "max_drift_pct": "a proposal is refused when the price moved more than this % since the model saw it",
    "auto_approve": "approve proposals within auto-approve's own strict limits",
    "auto_approve_min_confidence": "auto-approve only proposals at least this confident (0-1)",
    "auto_approve_max_order_value": "auto-approve sends at most this order value (quote currency); a larger "
                                    "proposal is scaled down to it",
    "journal_path": "SQLite journal of proposals, orders and fills; empty: in the user data directory",
    "ui_refresh_hz": "chart refreshes per second (1-120)",
    "perf_thresholds_ms": "p99 thresholds in ms per performance stage; over one the panel and status bar warn",
    "theme": "dark or light",
    "sound_on_proposal": "a beep with each new proposal (the Decisions panel flashes either way)",
    "hotkeys": "keyboard shortcuts: action = key (Ctrl+Shift+B, F9, End, A; empty: none); one key per action; "
               "Help > Keyboard shortcuts lists them",
}

# Settings of earlier releases that mean something else now: ignored with a message saying what replaced them.
RETIRED: dict[str, str] = {
    "max_position_qty": "is retired: a limit in base units meant 0.5 BTC and 0.5 XRP alike; risk limits are now "
                        "in quote currency (max_position_value, and max_position_value_by_symbol per symbol); "
                        "ignored",
}

# What a commented-out line shows for a setting that is not set (TOML has no null).
_EXAMPLES: dict[str, str] = {"llm_url": "http://127.0.0.1:11434/v1", "journal_path": "~/trading/journal.sqlite3"}
_FLAGS = {"replay": "--replay", "replay_speed": "--speed", "record_path": "--record", "ws_url": "--ws-url",
          "rest_url": "--rest-url"}


def default_config_path() -> Path:
    """``settings.toml`` in the user config directory (``$XDG_CONFIG_HOME/ai-trading-terminal`` on Linux)."""
    from platformdirs import user_config_path

    return user_config_path(APP_NAME, appauthor=False) / FILE_NAME


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the file: ``key`` is dotted (``perf_thresholds_ms.loop_lag``), None for the file."""

    file: Path
    key: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}" if self.key else f"{self.file}: {self.message}"


@dataclass(slots=True)
class LoadResult:
    settings: Settings
    problems: list[ConfigProblem] = field(default_factory=list)
    backup: Path | None = None  # where the file as it was was copied, when it had problems

    def report(self) -> list[str]:
        """One line per problem, then where the original is kept: what the user is told."""
        lines = [str(p) for p in self.problems]
        if self.backup is not None:
            lines.append(f"{self.problems[0].file}: the file as it was is kept in {self.backup}")
        return lines


def load_settings(path: Path, *, backup: bool = True) -> LoadResult:
    """Settings from the file at ``path``; see the module docstring for what happens to a bad file.
    ``backup=False`` reads without keeping a copy (the settings dialog: start-up has kept one already)."""
    path = Path(path)
    _backup = _keep_backup if backup else (lambda _path, _raw, _problems: None)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return LoadResult(Settings())
    except OSError as exc:
        result = LoadResult(Settings(), [ConfigProblem(
            path, None, f"cannot read the file ({exc.strerror or exc}); using the defaults for every setting")])
        result.backup = _backup(path, None, result.problems)
        return result
    try:
        data = tomllib.loads(raw.decode("utf-8"), parse_float=Decimal)
    except UnicodeDecodeError as exc:
        why = f"is not UTF-8 text (bad byte at offset {exc.start})"
    except tomllib.TOMLDecodeError as exc:
        why = f"is not valid TOML: {exc}"
    else:
        settings, problems = validate_file_data(data, path)
        result = LoadResult(settings, problems)
        if problems:
            result.backup = _backup(path, raw, result.problems)
        return result
    result = LoadResult(Settings(), [ConfigProblem(path, None, f"{why}; using the defaults for every setting")])
    result.backup = _backup(path, raw, result.problems)
    return result


def validate_file_data(data: Mapping[str, Any], path: Path) -> tuple[Settings, list[ConfigProblem]]:
    """Settings from parsed TOML: bad keys (or table entries) take their defaults, good ones are kept."""
    defaults = Settings()
    problems: list[ConfigProblem] = []
    data = dict(data)
    for key in sorted(PER_RUN_FIELDS & data.keys()):
        data.pop(key)
        problems.append(ConfigProblem(path, key, f"is a per-run option ({_FLAGS.get(key, 'a flag')}), "
                                                 "not read from the settings file; ignored"))
    for old, new in RETIRED.items():
        if old in data:
            data.pop(old)
            problems.append(ConfigProblem(path, old, new))
    tolerances = data.get("cache_tolerances")
    if isinstance(tolerances, dict):  # an unknown feature is one bad entry, not a bad table
        from app.llm.cache import FEATURE_NAMES  # only for a file that sets tolerances (see app.config)

        for key in [k for k in tolerances if k not in FEATURE_NAMES]:
            tolerances = {k: v for k, v in tolerances.items() if k != key}
            problems.append(ConfigProblem(path, f"cache_tolerances.{key}", "is not a cache feature (known: "
                                                 f"{', '.join(FEATURE_NAMES)}); ignored"))
        data["cache_tolerances"] = tolerances
    hotkeys = data.get("hotkeys")
    if isinstance(hotkeys, dict):  # an unknown action or a key that does not parse is one bad entry
        kept = {}
        for action, text in hotkeys.items():
            if action not in DEFAULT_HOTKEYS:
                problems.append(ConfigProblem(path, f"hotkeys.{action}", "is not a hotkey action (known: "
                                                     f"{', '.join(DEFAULT_HOTKEYS)}); ignored"))
                continue
            try:
                kept[action] = parse_key(str(text))
            except ValueError as exc:
                problems.append(ConfigProblem(path, f"hotkeys.{action}", f"{exc}; using the default "
                                                     f"{DEFAULT_HOTKEYS[action] or '(none)'}"))
                continue
        data["hotkeys"] = kept
    for name in data.keys() & Settings.model_fields.keys():  # a table in the file adds to the default table
        default = getattr(defaults, name)
        if isinstance(default, dict) and isinstance(data[name], dict):
            data[name] = {**default, **data[name]}
    for _ in range(100):  # each pass removes at least one key, so this ends; the bound is a safety net
        try:
            return Settings.model_validate(data), problems
        except ValidationError as exc:
            removed = False
            for err in exc.errors():
                removed |= _drop_bad(err, data, defaults, path, problems)
            if not removed:  # an error no single key explains: nothing of the file can be trusted
                problems.append(ConfigProblem(path, None, f"{_why(exc.errors()[0])}; using the defaults"))
                return Settings(), problems
    return Settings(), problems  # pragma: no cover - unreachable in practice


def _drop_bad(err: Any, data: dict[str, Any], defaults: Settings, path: Path,
              problems: list[ConfigProblem]) -> bool:
    loc = err["loc"]
    if not loc or loc[0] not in data:
        return False
    name = str(loc[0])
    value = data[name]
    if len(loc) >= 2 and isinstance(value, dict) and loc[1] in value:  # one entry of a table
        entry = str(loc[1])
        got = value[entry]
        fallback = getattr(defaults, name).get(entry)
        data[name] = {k: fallback if k == entry else v for k, v in value.items() if k != entry or fallback is not None}
        problems.append(ConfigProblem(path, f"{name}.{entry}", _why(err, got, fallback, fallback is not None)))
        return True
    del data[name]
    if err["type"] == "extra_forbidden":
        near = difflib.get_close_matches(name, [f for f in Settings.model_fields if f not in PER_RUN_FIELDS], 1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        problems.append(ConfigProblem(path, name, f"is not a setting{hint}; ignored"))
    else:
        problems.append(ConfigProblem(path, name, _why(err, value, getattr(defaults, name), True)))
    return True


def _why(err: Any, got: Any = None, default: Any = None, has_default: bool = False) -> str:
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if msg.startswith("Input should be "):
        msg = "must be " + msg.removeprefix("Input should be ")
    msg = msg.replace("a valid dictionary", "a table").replace("a valid list", "an array")  # TOML's words
    shown = _show(got)
    if got is not None and shown not in msg and str(got) not in msg:
        msg += f" (got {shown})"
    if has_default and isinstance(default, dict):
        msg += "; using the defaults"
    elif has_default:
        msg += f"; using the default {_show(default)}" if default is not None else "; using the default (not set)"
    else:
        msg += "; ignored"
    return msg


def _show(v: Any) -> str:
    if v is None:
        return "(not set)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, Path)):
        text = str(v) if isinstance(v, Path) else v
        return '"' + (text if len(text) <= 60 else text[:57] + "...") + '"'
    if isinstance(v, float) and v.is_integer():
        return str(int(v)) if abs(v) < 1e15 else repr(v)
    text = str(v)
    return text if len(text) <= 60 else text[:57] + "..."


def keep_copy(path: Path, raw: bytes | None = None) -> Path:
    """Copy ``path`` beside itself as ``<name>.bak``. An existing .bak with the same bytes is reused (a file that
    stays bad does not pile up copies); one with other bytes is kept and the copy is named
    ``<name>.<YYYYmmdd-HHMMSS>.bak`` (``-2``, ``-3``... if that exists too). Raises OSError."""
    bak = path.with_name(path.name + ".bak")
    if bak.exists():
        if raw is not None:  # the same bad bytes kept before (under any of the names below): reuse that copy
            for old in [bak, *sorted(p for p in path.parent.glob(f"{path.name}.*.bak") if p != bak)]:
                with contextlib.suppress(OSError):
                    if old.read_bytes() == raw:
                        return old
        stamp = time.strftime("%Y%m%d-%H%M%S")
        bak = path.with_name(f"{path.name}.{stamp}.bak")
        n = 2
        while bak.exists():
            bak = path.with_name(f"{path.name}.{stamp}-{n}.bak")
            n += 1
    if raw is not None:
        bak.write_bytes(raw)  # exactly the bytes that were judged
        with contextlib.suppress(OSError):
            shutil.copystat(path, bak)
    else:
        shutil.copy2(path, bak)
    return bak


def _keep_backup(path: Path, raw: bytes | None, problems: list[ConfigProblem]) -> Path | None:
    try:
        return keep_copy(path, raw)
    except OSError as exc:
        problems.append(ConfigProblem(path, None, f"could not keep a copy ({exc.strerror or exc}); the file is "
                                                  "left untouched"))
        return None


# ----- writing ------------------------------------------------------------------------------------------------
def save_settings(settings: Settings, path: Path) -> None:
    """Write ``settings`` to ``path`` atomically (temporary file, fsync, os.replace). Creates the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_settings(settings)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def render_settings(settings: Settings) -> str:
    """The TOML text of ``save_settings``: every setting, those at their default commented out."""
    defaults = Settings()
    lines = [
        "# AI Trading Terminal settings (TOML). The settings dialog writes this file; editing by hand is fine.",
        "# Settings at their default are commented out: remove the '# ' to change one.",
        "# Command-line flags override this file for one run. API keys are never stored here (OS keyring or",
        "# the OPENAI_API_KEY environment variable). --replay, --speed and --record are per-run flags only.",
    ]
    tables: list[str] = []
    for title, names in SECTIONS:
        lines += ["", f"# ----- {title} -----"]
        for name in names:
            value, default = getattr(settings, name), getattr(defaults, name)
            if isinstance(default, dict):
                tables += ["", f"# {HELP[name]}", f"[{name}]"]
                # Every entry is shown; the cache's defaults are those of app/llm/cache.py (1m bars).
                if name == "cache_tolerances":
                    from app.llm.cache import DEFAULT_TOLERANCES, FEATURE_NAMES

                    base = {n: DEFAULT_TOLERANCES[n] for n in FEATURE_NAMES}
                else:
                    base = default
                for key in [*base, *sorted(k for k in value if k not in base)]:
                    if key in value:
                        tables.append(_assign(key, value[key], commented=_same(value[key], base.get(key))))
                    else:
                        tables.append(_assign(key, base[key], commented=True))
                continue
            lines.append(f"# {HELP[name]}")
            if value is None:
                lines.append(f'# {name} = "{_EXAMPLES.get(name, "")}"')
            else:
                lines.append(_assign(name, value, commented=_same(value, default)))
    return "\n".join([*lines, *tables]) + "\n"


def _same(a: Any, b: Any) -> bool:
    return a == b and (not isinstance(a, Decimal) or str(a) == str(b))


def _assign(key: str, value: Any, *, commented: bool) -> str:
    # The key as TOML wants it: bare when it can be, quoted otherwise ("ui frame", "a.b" in a table).
    line = f"{tomli_w.dumps({key: 0}).partition(' = ')[0]} = {_toml_value(value)}"
    return f"# {line}" if commented else line


def _toml_value(v: Any) -> str:
    if isinstance(v, Decimal):
        # Its own digits: "0.001" stays 0.001, "5000" is written as the integer 5000 (read back as Decimal("5000")).
        return str(v) if v.as_tuple().exponent != 0 else str(int(v))
    if isinstance(v, Path):
        v = str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return tomli_w.dumps({"v": v}).partition("=")[2].strip()
