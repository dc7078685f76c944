"""Live trading is asked for explicitly and confirmed explicitly: the flags and settings, and the exchange keys that
are never settings."""

from __future__ import annotations

import pytest

from app.__main__ import _settings_from, build_parser, main
from app.config import Settings
from app.secrets import Secrets, forget_memory
from app.settings_store import load_settings, render_settings, save_settings
from tests.keyring_backends import MemoryKeyring


def settings_for(*argv: str):
    return _settings_from(build_parser().parse_args(list(argv)))


def test_paper_is_the_default_and_live_means_the_testnet_unless_mainnet_is_said(tmp_path):
    cfg = str(tmp_path / "settings.toml")
    s, _ = settings_for("--config", cfg)
    assert (s.live_trading, s.live_testnet) == (False, True)
    s, _ = settings_for("--config", cfg, "--live")
    assert (s.live_trading, s.live_testnet) == (True, True)
    s, _ = settings_for("--config", cfg, "--live", "--mainnet")
    assert (s.live_trading, s.live_testnet) == (True, False)
    s, _ = settings_for("--config", cfg, "--testnet")
    assert (s.live_trading, s.live_testnet) == (False, True)


def test_the_settings_file_can_ask_for_live_and_a_flag_never_turns_it_off_silently(tmp_path):
    cfg = tmp_path / "settings.toml"
    save_settings(Settings(live_trading=True, live_testnet=False), cfg)
    s, problems = settings_for("--config", str(cfg))
    assert (s.live_trading, s.live_testnet, problems) == (True, False, [])
    s, _ = settings_for("--config", str(cfg), "--testnet")
    assert (s.live_trading, s.live_testnet) == (True, True)


def test_confirm_live_without_live_is_refused_before_anything_starts(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "settings.toml"), "--confirm-live"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --confirm-live confirms live trading asked for with --live"), err
    assert "never implied" in err


def test_confirm_live_with_live_only_in_the_settings_file_is_refused_too(tmp_path, capsys):
    cfg = tmp_path / "settings.toml"
    save_settings(Settings(live_trading=True), cfg)
    assert main(["--config", str(cfg), "--confirm-live"]) == 2  # a scripted run says --live itself
    assert "--confirm-live" in capsys.readouterr().err


def test_testnet_and_mainnet_together_are_refused(tmp_path):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--testnet", "--mainnet"])
    assert exc.value.code == 2


def test_exchange_keys_are_never_settings_nor_written_to_the_file(tmp_path):
    forget_memory()
    backend = MemoryKeyring()
    secrets = Secrets(env={}, backend=backend)
    secret_value = "tt-binance-secret-never-in-the-file"
    secrets.set("binance_api_key", "tt-binance-key-never-in-the-file")
    secrets.set("binance_api_secret", secret_value)
    cfg = tmp_path / "settings.toml"
    save_settings(Settings(live_trading=True, exchange="binance"), cfg)
    text = cfg.read_text()
    assert "tt-binance" not in text and "live_trading = true" in text
    assert "api_key =" not in text and "api_secret =" not in text
    assert backend.store[("ai-trading-terminal", "binance_api_secret")] == secret_value
    # A key typed into the file by hand is not a setting: ignored, and said so.
    cfg.write_text('binance_api_key = "pasted-here"\nlive_trading = true\n')
    loaded = load_settings(cfg, backup=False)
    assert loaded.settings.live_trading is True
    assert [p.key for p in loaded.problems] == ["binance_api_key"]
    assert "is not a setting" in loaded.problems[0].message
    assert "pasted-here" not in render_settings(loaded.settings)
    forget_memory()


@pytest.mark.asyncio
@pytest.mark.parametrize(("flag", "auto"), [((), False), (("--auto-approve",), True)])
async def test_auto_approve_in_live_comes_from_this_runs_command_line_never_the_settings_file(tmp_path, flag, auto):
    from app.__main__ import _open_live
    from app.session import Session

    cfg = tmp_path / "settings.toml"
    save_settings(Settings(auto_approve=True, sim_process=False, history_bars=0, decision_source="rules",
                           journal_path=tmp_path / "journal.sqlite3"), cfg)
    argv = ["--config", str(cfg), "--exchange", "sim", "--symbols", "BTCUSDT", "--live", "--confirm-live", *flag]
    args = build_parser().parse_args(argv)
    settings, _ = _settings_from(args)
    assert settings.auto_approve is True  # the file's (a paper session would use it)
    start = await _open_live(settings, args)
    session = Session(settings, live=start)
    try:
        assert session.is_live and start.auto_approve is auto and session.desk.proposals.auto_approve is auto
    finally:
        await session.stop()


@pytest.mark.parametrize("argv", [["--smoke-order", "0.001"],
                                  ["--smoke-test", "1", "--smoke-order", "0.001", "--live", "--exchange", "binance"]])
def test_the_smoke_order_hook_is_for_smoke_tests_on_paper_or_the_built_in_exchange(tmp_path, capsys, argv):
    assert main(["--config", str(tmp_path / "settings.toml"), *argv]) == 2
    assert "--smoke-order is for smoke tests on paper or the built-in exchange" in capsys.readouterr().err
