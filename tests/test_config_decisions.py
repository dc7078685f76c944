"""The decision cadence's settings: defaults, bounds a broken file falls back from with a reason, and what the
session makes of them (the service's interval, the cache's price band, the market clock)."""

from __future__ import annotations

import math
import time

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.llm.cache import DEFAULT_PRICE_BAND_ATR
from app.models import Side, Trade
from app.session import Session
from app.settings_store import load_settings


def test_defaults():
    s = Settings()
    assert s.decision_interval_s == 5.0
    assert s.cache_price_band_atr == DEFAULT_PRICE_BAND_ATR
    assert s.sound_on_proposal is False


@pytest.mark.parametrize(("name", "value"), [
    ("decision_interval_s", 0.4), ("decision_interval_s", 3601), ("decision_interval_s", math.nan),
    ("cache_price_band_atr", 0), ("cache_price_band_atr", -1), ("cache_price_band_atr", 101),
    ("cache_price_band_atr", math.inf), ("cache_price_band_atr", math.nan),
])
def test_out_of_bounds_values_are_refused(name, value):
    with pytest.raises(ValidationError, match=name):
        Settings(**{name: value})


def test_a_broken_value_in_the_file_falls_back_alone_with_a_clear_reason(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('decision_interval_s = 0.1\ncache_price_band_atr = "wide"\nsound_on_proposal = true\n')
    result = load_settings(path)
    assert result.settings.decision_interval_s == 5.0
    assert result.settings.cache_price_band_atr == DEFAULT_PRICE_BAND_ATR
    assert result.settings.sound_on_proposal is True
    problems = {p.key: str(p) for p in result.problems}
    assert problems["decision_interval_s"] == (
        f"{path}: decision_interval_s: must be greater than or equal to 0.5 (got 0.1); using the default 5")
    assert problems["cache_price_band_atr"].startswith(f"{path}: cache_price_band_atr: must be a valid number")


def session(tmp_path, **settings) -> Session:
    return Session(Settings(journal_path=tmp_path / "journal.sqlite3", history_bars=0, **settings))


def test_the_session_passes_the_interval_and_the_price_band_on(tmp_path):
    s = session(tmp_path, llm_url="http://127.0.0.1:9/v1", decision_interval_s=2.5, cache_price_band_atr=1.5)
    try:
        assert s.decisions.interval_s == 2.5
        assert s.decisions.cache is not None and s.decisions.cache.price_band_atr == 1.5
    finally:
        s.journal.close()


def test_a_live_market_clock_is_the_wall_clock_never_behind_the_newest_trade(tmp_path):
    s = session(tmp_path)
    try:
        before = int(time.time() * 1000)
        assert before <= s.market_ms() <= int(time.time() * 1000)
        ahead = before + 90_000  # an exchange whose clock runs ahead of this machine's
        s.market.apply([Trade(s.symbols[0], 100.0, 1.0, Side.BUY, 1, ahead, 0)])
        assert s.market_ms() == ahead
    finally:
        s.journal.close()


def test_a_replay_market_clock_is_the_newest_trade_time(tmp_path):
    s = session(tmp_path, replay=tmp_path / "recording.gz")
    try:
        s.market.apply([Trade(s.symbols[0], 100.0, 1.0, Side.BUY, 1, 1_700_000_000_000, 0)])
        assert s.market_ms() == 1_700_000_000_000
    finally:
        s.journal.close()


def test_the_cache_ttl_help_says_what_the_cache_does_with_it():
    from app.settings_store import HELP

    text = HELP["cache_ttl_s"]
    assert "volatility" not in text, "volatility no longer shortens an answer's life"
    assert "1m bars" in text and "confidence" in text and "bar length" in text
