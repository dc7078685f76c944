"""Settings file and command line together, as a user runs them: a bad file never stops the terminal, and a flag
overrides the file for one run without touching it."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from app.__main__ import _settings_from, build_parser

ROOT = Path(__file__).resolve().parents[2]


def run_terminal(tmp_path: Path, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
               XDG_DATA_HOME=str(tmp_path / "xdg-data"), XDG_STATE_HOME=str(tmp_path / "xdg-state"),
               XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def settings_for(*argv: str):
    return _settings_from(build_parser().parse_args(list(argv)))


# ----- in process: what the flags do to the file's settings ------------------------------------------------------
def test_given_flags_override_the_file_and_absent_flags_leave_it_alone(tmp_path):
    cfg = tmp_path / "settings.toml"
    cfg.write_text('symbol = "ETHUSDT"\ntheme = "light"\nmax_order_notional = 1234.5\nauto_approve = true\n'
                   'llm_model = "llama3"\n')
    settings, problems = settings_for("--config", str(cfg))
    assert problems == []
    assert (settings.symbol, settings.theme, settings.auto_approve, settings.llm_model) == (
        "ETHUSDT", "light", True, "llama3")
    assert settings.max_order_notional == Decimal("1234.5")

    settings, _ = settings_for("--config", str(cfg), "--symbol", "solusdt", "--theme", "dark", "--model", "m2")
    assert (settings.symbol, settings.theme, settings.llm_model) == ("SOLUSDT", "dark", "m2")
    assert settings.auto_approve is True  # --auto-approve absent: the file's value stands
    assert settings.max_order_notional == Decimal("1234.5")


def test_auto_approve_flag_only_overrides_when_present(tmp_path):
    cfg = tmp_path / "settings.toml"
    assert settings_for("--config", str(cfg))[0].auto_approve is False
    assert settings_for("--config", str(cfg), "--auto-approve")[0].auto_approve is True


def test_bad_flag_is_exit_2_with_the_flag_named(tmp_path, capsys):
    assert settings_for("--config", str(tmp_path / "none.toml"), "--symbol", "BTC-USD") is None
    err = capsys.readouterr().err
    assert err.startswith("error: --symbol: symbol 'BTC-USD' must be letters and digits"), err


# ----- a real process ----------------------------------------------------------------------------------------------
def test_corrupt_settings_file_still_starts_and_says_what_is_wrong(tmp_path):
    cfg = tmp_path / "settings.toml"
    raw = b'symbol = "ETHUSDT"\n[perf_thresholds_ms\n'
    cfg.write_bytes(raw)
    proc = run_terminal(tmp_path, "--smoke-test", "3", "--config", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke test passed" in proc.stdout
    assert f"settings: {cfg}: is not valid TOML" in proc.stderr, proc.stderr
    assert (tmp_path / "settings.toml.bak").read_bytes() == raw
    assert cfg.read_bytes() == raw
    assert "Traceback" not in proc.stderr


def test_bad_key_is_named_and_the_flag_beats_the_file_for_one_run_only(tmp_path):
    cfg = tmp_path / "settings.toml"
    file_journal = tmp_path / "from-file.sqlite3"
    flag_journal = tmp_path / "from-flag.sqlite3"
    text = f'journal_path = "{file_journal}"\nmax_order_notional = -5\n'
    cfg.write_text(text)
    proc = run_terminal(tmp_path, "--smoke-test", "3", "--config", str(cfg), "--journal", str(flag_journal))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (f"{cfg}: max_order_notional: must be greater than 0 (got -5); using the default 5000"
            in proc.stderr), proc.stderr
    assert flag_journal.exists() and not file_journal.exists()
    assert cfg.read_text() == text  # the flag was for this run: the file is as it was

    proc = run_terminal(tmp_path, "--smoke-test", "2", "--config", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert file_journal.exists()  # without the flag, the file's setting applies
