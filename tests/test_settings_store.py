"""The settings file as a user meets it: hand-edited, broken, saved by the dialog, read at the next start."""

from __future__ import annotations

import socket
import sys
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from app.config import PER_RUN_FIELDS, Settings
from app.llm.cache import DEFAULT_TOLERANCES, tolerances_for
from app.settings_store import (
    HELP,
    SECTIONS,
    ConfigProblem,
    default_config_path,
    load_settings,
    render_settings,
    save_settings,
)


def write(path: Path, text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    path.write_bytes(raw)
    return raw


def by_key(problems: list[ConfigProblem]) -> dict[str | None, str]:
    return {p.key: str(p) for p in problems}


def test_missing_file_gives_defaults_and_no_problem(tmp_path):
    result = load_settings(tmp_path / "settings.toml")
    assert result.settings == Settings()
    assert result.problems == [] and result.backup is None and result.report() == []
    assert list(tmp_path.iterdir()) == []


def test_corrupt_toml_is_kept_as_bak_and_every_setting_takes_its_default(tmp_path):
    path = tmp_path / "settings.toml"
    raw = write(path, 'symbol = "ETHUSDT"\nmax_order_notional = = 3\n')
    result = load_settings(path)
    assert result.settings == Settings()
    [problem] = result.problems
    assert problem.key is None
    assert str(problem).startswith(f"{path}: is not valid TOML") and "line 2" in str(problem)
    assert "using the defaults" in str(problem)
    assert result.backup == tmp_path / "settings.toml.bak"
    assert result.backup.read_bytes() == raw
    assert path.read_bytes() == raw  # the original is left for the user to fix
    assert any(str(result.backup) in line for line in result.report())


def test_file_that_is_not_utf8_is_reported_not_raised(tmp_path):
    path = tmp_path / "settings.toml"
    raw = write(path, b'symbol = "\xff\xfe"\n')
    result = load_settings(path)
    assert result.settings == Settings()
    assert "not UTF-8" in str(result.problems[0])
    assert result.backup is not None and result.backup.read_bytes() == raw


def test_unreadable_file_is_reported_and_the_terminal_gets_defaults(tmp_path):
    path = tmp_path / "settings.toml"
    path.mkdir()  # reading a directory fails whoever runs the test (chmod 000 does not stop root)
    result = load_settings(path)
    assert result.settings == Settings()
    assert any(p.key is None and "cannot read the file" in p.message for p in result.problems)


def test_bad_keys_fall_back_alone_and_good_keys_are_kept(tmp_path):
    path = tmp_path / "settings.toml"
    raw = write(path, """\
symbol = "ethusdt"
maker_fee = 0.00075
max_order_notional = -5
max_open_orders = "ten"
exchange = "ftx"
max_ordr_notional = 3
theme = "light"
""")
    result = load_settings(path)
    s = result.settings
    # good keys kept
    assert s.symbol == "ETHUSDT" and s.maker_fee == Decimal("0.00075") and s.theme == "light"
    # bad keys: their defaults
    assert s.max_order_notional == Decimal("5000") and s.max_open_orders == 10 and s.exchange == "sim"
    problems = by_key(result.problems)
    assert problems["max_order_notional"] == (
        f"{path}: max_order_notional: must be greater than 0 (got -5); using the default 5000")
    assert problems["max_open_orders"].startswith(f"{path}: max_open_orders: must be a valid integer")
    assert '(got "ten"); using the default 10' in problems["max_open_orders"]
    assert "must be 'sim', 'binance', 'binance-futures', 'coinbase' or 'kraken'" in problems["exchange"]
    assert problems["max_ordr_notional"] == (
        f"{path}: max_ordr_notional: is not a setting (did you mean max_order_notional?); ignored")
    assert set(problems) == {"max_order_notional", "max_open_orders", "exchange", "max_ordr_notional"}
    assert result.backup is not None and result.backup.read_bytes() == raw
    assert path.read_bytes() == raw


def test_a_bad_table_entry_falls_back_alone_and_missing_entries_keep_their_defaults(tmp_path):
    path = tmp_path / "settings.toml"
    write(path, """\
[perf_thresholds_ms]
loop_lag = -1
ui_frame = 20

[cache_tolerances]
rsi = 4
foo = 1
atr_pct = 0
""")
    result = load_settings(path)
    s = result.settings
    assert s.perf_thresholds_ms == {**Settings().perf_thresholds_ms, "ui_frame": 20.0}
    assert s.cache_tolerances == {"rsi": 4.0}
    problems = by_key(result.problems)
    assert "must be a positive number (got -1); using the default 5" in problems["perf_thresholds_ms.loop_lag"]
    assert "is not a cache feature" in problems["cache_tolerances.foo"]
    assert problems["cache_tolerances.atr_pct"].endswith("must be a positive number (got 0); ignored")


def test_per_run_options_in_the_file_are_ignored_with_a_reason(tmp_path):
    path = tmp_path / "settings.toml"
    write(path, 'replay = "feed.gz"\nrecord_path = "out.txt"\nsymbol = "SOLUSDT"\n')
    result = load_settings(path)
    assert result.settings.replay is None and result.settings.record_path is None
    assert result.settings.symbol == "SOLUSDT"
    assert "per-run option (--replay)" in by_key(result.problems)["replay"]


def test_endpoint_flags_in_the_file_are_named_as_flags(tmp_path):
    path = tmp_path / "settings.toml"
    write(path, 'ws_url = "ws://127.0.0.1:9"\nrest_url = "http://127.0.0.1:9"\n')
    result = load_settings(path)
    assert result.settings.ws_url is None and result.settings.rest_url is None
    problems = by_key(result.problems)
    assert "per-run option (--ws-url)" in problems["ws_url"]
    assert "per-run option (--rest-url)" in problems["rest_url"]


def test_existing_bak_is_never_clobbered(tmp_path):
    path = tmp_path / "settings.toml"
    older = write(tmp_path / "settings.toml.bak", b"an older copy the user may still want\n")
    raw = write(path, "max_open_orders = 0\n")
    first = load_settings(path)
    assert first.backup is not None and first.backup != tmp_path / "settings.toml.bak"
    assert first.backup.name.startswith("settings.toml.") and first.backup.name.endswith(".bak")
    assert first.backup.read_bytes() == raw
    assert (tmp_path / "settings.toml.bak").read_bytes() == older
    # The same bad file at the next start does not pile up copies.
    write(tmp_path / "settings.toml.bak", raw)
    again = load_settings(path)
    assert again.backup == tmp_path / "settings.toml.bak"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["settings.toml", "settings.toml.bak",
                                                                  first.backup.name])


def test_endpoint_url_is_checked_for_form_only_and_loading_does_no_network_io(tmp_path, monkeypatch):
    def no_network(*_a, **_k):
        raise AssertionError("loading settings must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    path = tmp_path / "settings.toml"
    write(path, 'llm_url = "http://127.0.0.1:9/v1"\n')  # well formed, nothing listens there
    ok = load_settings(path)
    assert ok.problems == [] and ok.settings.llm_url == "http://127.0.0.1:9/v1"

    write(path, 'llm_url = "ftp//x"\nllm_model = "llama3"\n')
    bad = load_settings(path)
    assert bad.settings.llm_url is None and bad.settings.llm_model == "llama3"
    msg = by_key(bad.problems)["llm_url"]
    assert msg.startswith(f"{path}: llm_url: model endpoint 'ftp//x' must be an http:// or https:// URL")
    assert msg.endswith("using the default (not set)")


def test_saved_settings_load_back_equal_with_decimals_exact(tmp_path):
    path = tmp_path / "sub" / "settings.toml"
    s = Settings(
        exchange="kraken", symbol="ETHUSDT", symbols=["ETHUSDT", "BTCUSDT"], timeframe="5m",
        llm_url="http://127.0.0.1:11434/v1", llm_model="llama3.1", cache_enabled=False, cache_ttl_s=42.5,
        cache_max_entries=99, cache_tolerances={"rsi": 4.0, "ret_1": 0.02},
        maker_fee=Decimal("0.00075"), taker_fee=Decimal("0.001"), starting_cash=Decimal("12345.67"),
        max_position_value=Decimal("1E-8"), max_order_notional=Decimal("5000.00"), daily_loss_limit=Decimal("0"),
        max_position_value_by_symbol={"XRPUSDT": Decimal("250.50")},
        auto_approve=True, journal_path=tmp_path / "j.sqlite3", perf_thresholds_ms={"loop_lag": 8.0},
        ui_refresh_hz=0.1 + 59.9, theme="light",
    )
    save_settings(s, path)
    back = load_settings(path)
    assert back.problems == []
    # perf thresholds left out of the saved table keep their defaults
    assert back.settings == s.model_copy(update={"perf_thresholds_ms": {**Settings().perf_thresholds_ms,
                                                                         "loop_lag": 8.0}})
    for name in ("maker_fee", "taker_fee", "starting_cash", "max_position_value", "max_order_notional",
                 "daily_loss_limit"):
        assert str(getattr(back.settings, name)) == str(getattr(s, name)), name
    assert str(back.settings.taker_fee) == "0.001"
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.toml"]  # no temp file left behind


def test_file_shows_every_setting_and_leaves_out_per_run_options(tmp_path):
    path = tmp_path / "settings.toml"
    save_settings(Settings(replay=tmp_path / "feed.gz", record_path=tmp_path / "rec.txt", replay_speed=5,
                           max_open_orders=3), path)
    text = path.read_text()
    assert tomllib.loads(text) == {"max_open_orders": 3, "cache_tolerances": {}, "perf_thresholds_ms": {},
                                   "max_order_value_by_symbol": {}, "max_position_value_by_symbol": {},
                                   "hotkeys": {}}
    assigned = {line.removeprefix("# ").partition(" = ")[0] for line in text.splitlines() if " = " in line}
    assigned |= {line.strip("[]") for line in text.splitlines() if line.startswith("[")}
    assert assigned >= set(Settings.model_fields) - PER_RUN_FIELDS
    assert not assigned & PER_RUN_FIELDS
    assert str(tmp_path / "feed.gz") not in text
    assert "# maker_fee = 0.001" in text  # defaults are there, commented out
    assert load_settings(path).settings == Settings(max_open_orders=3)


def test_sections_and_help_cover_every_file_setting():
    in_sections = [n for _, names in SECTIONS for n in names]
    assert sorted(in_sections) == sorted(set(Settings.model_fields) - PER_RUN_FIELDS)
    assert set(HELP) == set(in_sections)
    assert "api_key" not in render_settings(Settings()).replace("OPENAI_API_KEY", "")


def test_cache_tolerance_overrides_merge_with_the_defaults_and_scale_like_them():
    assert Settings().decision_cache_tolerances() is None  # the cache's own per-timeframe defaults
    s = Settings(decision_timeframe="1m", cache_tolerances={"rsi": 4.0, "ret_1": 0.02})
    assert s.decision_cache_tolerances() == tolerances_for("1m", {**DEFAULT_TOLERANCES, "rsi": 4.0, "ret_1": 0.02})
    with pytest.raises(ValueError, match="unknown cache feature"):
        Settings(cache_tolerances={"nope": 1.0})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG directories are the Linux convention")
def test_default_path_is_in_the_xdg_config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_config_path() == tmp_path / "ai-trading-terminal" / "settings.toml"


def test_table_keys_that_need_quotes_round_trip(tmp_path):
    path = tmp_path / "settings.toml"
    thresholds = {**Settings().perf_thresholds_ms, "ui frame": 20.0, "a.b": 5.0}
    save_settings(Settings(perf_thresholds_ms=thresholds), path)
    loaded = load_settings(path)
    assert loaded.problems == []
    assert loaded.settings.perf_thresholds_ms == thresholds


def test_a_file_that_stays_bad_keeps_one_copy_and_the_dialog_keeps_none(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text("max_open_orders = -1\n")
    load_settings(path)
    path.write_text("max_open_orders = -2\n")  # bad in another way: a second, stamped copy
    load_settings(path)
    load_settings(path)  # the same bad bytes again: no third copy
    load_settings(path, backup=False)
    assert len(list(tmp_path.glob("settings.toml*.bak"))) == 2


def test_an_old_position_limit_in_base_units_is_ignored_with_a_reason_and_tables_per_symbol_are_checked(tmp_path):
    """max_position_qty (0.5 meant 0.5 BTC and 0.5 XRP alike) is retired: an old file still loads, its other keys
    kept, and the trader is told what replaced it. A bad entry of a per-symbol table falls back alone."""
    path = tmp_path / "settings.toml"
    path.write_text('max_position_qty = 0.5\nmax_order_notional = 2000\n[max_position_value_by_symbol]\n'
                    'xrpusdt = 500\n"XRP-USDT" = 100\nSOLUSDT = -1\n', encoding="utf-8")
    result = load_settings(path)
    s = result.settings
    assert s.max_order_notional == Decimal("2000") and s.max_position_value == Decimal("25000")
    assert s.max_position_value_by_symbol == {"XRPUSDT": Decimal("500")}
    problems = by_key(result.problems)
    assert "max_position_value" in problems["max_position_qty"] and "ignored" in problems["max_position_qty"]
    assert "must be letters and digits" in problems["max_position_value_by_symbol.XRP-USDT"]
    assert "must be greater than 0" in problems["max_position_value_by_symbol.SOLUSDT"]
