"""MarketState from candles: hand-built series with known answers, the bounded tail against the indicators over the
full history (real data), and the replay of the real Binance capture checked against the raw file read
independently."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from app.market import indicators as ind
from app.market.candles import TIMEFRAMES, CandleSeries, read_trades
from app.market.features import (
    FEATURE_NAMES,
    MIN_BARS,
    RETURN_BARS,
    VOLUME_RATIO_MAX,
    VWAP_BARS,
    MarketState,
    PositionState,
    compute_state,
    spread_bps,
    states_from_recording,
    tail_length,
)
from app.market.recording import RecordingError
from tests.conftest import BINANCE_CAPTURE, require_data
from tests.market.test_indicators import CAPTURE_FILES, coinbase_bars

T0 = 1_723_161_600_000  # 2024-08-09 00:00:00 UTC
S = 1000


def series_of(
    close: list[float] | np.ndarray,
    volume: list[float] | np.ndarray | None = None,
    timeframe: str = "1s",
    spread: float = 1.0,
    t0: int = T0,
) -> CandleSeries:
    """Bars with the given closes (open at the previous close, high/low ``spread`` around the close)."""
    c = np.asarray(close, dtype=np.float64)
    n = c.size
    v = np.ones(n) if volume is None else np.asarray(volume, dtype=np.float64)
    o = np.concatenate((c[:1], c[:-1]))
    s = CandleSeries(timeframe, capacity=max(n, 1))
    tf = TIMEFRAMES[timeframe]
    s.load_history(
        t0 + tf * np.arange(n), o, np.maximum(o, c) + spread, np.minimum(o, c) - spread, c, v, np.ones(n, np.int64)
    )
    return s


def state_of(series: CandleSeries, **kwargs) -> MarketState:
    kwargs.setdefault("symbol", "BTCUSDT")
    kwargs.setdefault("quote_bid", None)
    kwargs.setdefault("quote_ask", None)
    st = compute_state(series, **kwargs)
    assert st is not None
    assert all(math.isfinite(x) for x in st.features())
    assert all(math.isfinite(x) for x in (st.last_price, st.ema_fast, st.ema_slow, st.vwap))
    return st


# ------------------------------------------------------------------------------------------------ by hand


def test_a_rising_market_reads_as_rising():
    st = state_of(series_of(np.linspace(100.0, 200.0, 120)))
    assert st.last_price == 200.0
    assert min(st.ret_1, st.ret_5, st.ret_15, st.ret_60) > 0.0
    assert st.ret_1 < st.ret_5 < st.ret_15 < st.ret_60
    assert st.ema_fast > st.ema_slow and st.ema_spread_pct > 0.0
    assert st.rsi > 50.0
    assert st.vwap_dist_pct > 0.0  # above its volume-weighted average
    assert st.atr_pct > 0.0


def test_a_falling_market_reads_as_falling():
    st = state_of(series_of(np.linspace(200.0, 100.0, 120)))
    assert max(st.ret_1, st.ret_5, st.ret_15, st.ret_60) < 0.0
    assert st.ema_spread_pct < 0.0
    assert st.rsi < 50.0
    assert st.vwap_dist_pct < 0.0


def test_returns_are_percent_over_k_bars_and_use_the_oldest_close_when_short():
    closes = 100.0 * 1.01 ** np.arange(80)  # +1% a bar
    st = state_of(series_of(closes))
    for k, got in zip(RETURN_BARS, (st.ret_1, st.ret_5, st.ret_15, st.ret_60), strict=True):
        assert got == pytest.approx((1.01**k - 1.0) * 100.0, rel=1e-12)
    short = state_of(series_of([100.0, 110.0, 121.0]))
    assert short.ret_1 == pytest.approx(10.0)
    assert short.ret_5 == short.ret_15 == short.ret_60 == pytest.approx(21.0)  # against the oldest close, 100


def test_a_flat_market_is_neutral_and_finite():
    st = state_of(series_of(np.full(50, 61_000.0), spread=0.0))
    assert (st.ret_1, st.ret_60, st.ema_spread_pct, st.atr_pct, st.vwap_dist_pct) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert st.rsi == 50.0
    assert st.volume_ratio == 1.0


def test_atr_pct_and_spread_of_known_bars_and_quote():
    st = state_of(series_of(np.full(40, 100.0), spread=1.0), quote_bid=100.0, quote_ask=100.1)
    assert st.atr_pct == pytest.approx(2.0)  # every true range is 2 at a price of 100
    assert st.spread_bps == pytest.approx(0.1 / 100.05 * 1e4)


@pytest.mark.parametrize(("bid", "ask"), [(None, None), (100.0, None), (None, 100.0), (0.0, 100.0), (math.nan, 1.0)])
def test_no_usable_quote_gives_a_zero_spread(bid, ask):
    assert spread_bps(bid, ask) == 0.0
    assert state_of(series_of([1.0, 2.0]), quote_bid=bid, quote_ask=ask).spread_bps == 0.0


def test_volume_ratio_is_the_last_closed_bar_over_the_20_before():
    vols = [1.0] * 5 + [2.0] * 20 + [7.0] + [500.0]  # the forming bar (500) does not count
    assert state_of(series_of(np.full(27, 10.0), vols)).volume_ratio == pytest.approx(3.5)
    assert state_of(series_of(np.full(22, 10.0), [2.0] * 20 + [7.0, 1.0])).volume_ratio == pytest.approx(3.5)
    assert state_of(series_of(np.full(21, 10.0), [2.0] * 19 + [7.0, 1.0])).volume_ratio == 1.0  # 19 before: too few
    assert state_of(series_of(np.full(22, 10.0), [0.0] * 20 + [7.0, 1.0])).volume_ratio == VOLUME_RATIO_MAX
    assert state_of(series_of(np.full(22, 10.0), [0.0] * 21 + [1.0])).volume_ratio == 1.0


def test_none_below_the_minimum_of_bars():
    assert MIN_BARS == 2
    assert compute_state(CandleSeries("1s"), symbol="X", quote_bid=None, quote_ask=None) is None
    assert compute_state(series_of([100.0]), symbol="X", quote_bid=None, quote_ask=None) is None
    st = state_of(series_of([100.0, 101.0]))
    assert st.ret_1 == pytest.approx(1.0)


def test_exchange_time_position_and_symbol_pass_through():
    st = state_of(
        series_of(np.arange(1.0, 31.0)),
        symbol="ETHUSDT",
        position=PositionState.LONG,
        position_pnl_sign=1,
    )
    assert (st.symbol, st.timeframe, st.position, st.position_pnl_sign) == ("ETHUSDT", "1s", PositionState.LONG, 1)
    assert st.exchange_ms == T0 + 29 * S + S  # the forming bar's close time
    assert len(st.features()) == len(FEATURE_NAMES)


def test_now_ms_counts_the_bars_without_trades_as_flat():
    s = series_of(np.arange(100.0, 130.0), np.full(30, 2.0))
    last_open = T0 + 29 * S
    assert state_of(s, now_ms=last_open + S) == state_of(s)  # the forming bar's own close: nothing to add
    later = state_of(s, now_ms=last_open + 3 * S + 1)  # three more bars without a trade, the last one forming
    assert later.exchange_ms == last_open + 3 * S + 1
    assert later.last_price == 129.0
    assert later.ret_1 == 0.0 and later.ret_5 == pytest.approx((129.0 / 127.0 - 1) * 100)
    assert later.volume_ratio == 0.0  # the last closed bar had no trade
    # Exactly the series the next trade would leave behind once CandleSeries fills the flat bars, before it.
    a = s.arrays()
    filled = CandleSeries("1s", capacity=40)
    flat = np.full(3, 129.0)
    filled.load_history(
        np.concatenate((a.open_ms, last_open + S * np.arange(1, 4))),
        *(np.concatenate((col, flat)) for col in (a.open, a.high, a.low, a.close)),
        np.concatenate((a.volume, np.zeros(3))),
        np.concatenate((a.trades, np.zeros(3, np.int64))),
    )
    want = state_of(filled)
    assert later.features() == want.features()
    assert (later.ema_fast, later.ema_slow, later.vwap) == (want.ema_fast, want.ema_slow, want.vwap)
    with pytest.raises(ValueError, match="before the newest bar"):
        compute_state(s, symbol="X", quote_bid=None, quote_ask=None, now_ms=last_open)


def test_a_series_padded_to_two_bars_by_now_ms_has_a_state():
    s = series_of([100.0])
    assert compute_state(s, symbol="X", quote_bid=None, quote_ask=None, now_ms=T0 + S) is None
    st = state_of(s, now_ms=T0 + 2 * S)
    assert st.ret_1 == 0.0 and st.volume_ratio == 1.0


def test_tail_length_covers_the_slowest_smoothing():
    assert tail_length() == 500
    assert tail_length(12, 200) > 500  # a 200-bar EMA needs a longer memory
    assert (1.0 - 2.0 / 201.0) ** tail_length(12, 200) < 1e-15


# ------------------------------------------------------------------------------- tail vs full history, real data


def assert_state_matches_full_history(st: MarketState, high, low, close, volume, rel: float = 1e-6) -> None:
    """The state computed on the tail against the indicators computed over every bar given."""
    last = close[-1]
    assert st.last_price == last
    want = {
        "ema_fast": ind.ema(close, 12)[-1],
        "ema_slow": ind.ema(close, 26)[-1],
        "rsi": ind.rsi(close, 14)[-1],
        "atr_pct": ind.atr(high, low, close, 14)[-1] / last * 100.0,
        "vwap": ind.vwap(high, low, close, volume, VWAP_BARS)[-1],
    }
    for k, name in zip(RETURN_BARS, ("ret_1", "ret_5", "ret_15", "ret_60"), strict=True):
        want[name] = (last / close[-1 - k] - 1.0) * 100.0
    want["ema_spread_pct"] = (want["ema_fast"] - want["ema_slow"]) / want["ema_slow"] * 100.0
    want["vwap_dist_pct"] = (last - want["vwap"]) / want["vwap"] * 100.0
    want["volume_ratio"] = volume[-2] / volume[-22:-2].mean()
    for name, value in want.items():
        got = getattr(st, name)
        # spreads and distances cross zero: absolute slack of rel times a typical 0.01% move
        assert got == pytest.approx(value, rel=rel, abs=rel * 1e-2), name


@pytest.mark.realdata
def test_the_tail_equals_the_full_history_on_20k_hourly_bars():
    b = coinbase_bars()
    for end in (600, 1000, 5_000, 12_345, b.close.size):
        s = CandleSeries("1h", capacity=b.close.size)
        s.load_history(b.open_ms[:end], *(col[:end] for col in b[1:6]), np.ones(end, np.int64))
        a = s.arrays()
        st = state_of(s, symbol="BTCUSD")
        assert_state_matches_full_history(st, a.high, a.low, a.close, a.volume, rel=1e-9)
        assert st.exchange_ms == int(b.open_ms[end - 1]) + 3_600_000


@pytest.mark.realdata
def test_the_tail_equals_the_full_history_on_the_capture_1s_bars():
    """Both capture files (one session) as 1s bars: about 650, so the 500-bar tail is a strict part of them."""
    parts = [read_trades(require_data(BINANCE_CAPTURE / name)) for name in CAPTURE_FILES]
    s = CandleSeries("1s", capacity=2000)
    s.add_trades(*(np.concatenate([getattr(p, col) for p in parts]) for col in ("ts_ms", "price", "qty")))
    a = s.arrays()
    assert len(s) > tail_length()  # the tail is a strict part of the series
    st = state_of(s, quote_bid=61_600.0, quote_ask=61_600.01)
    assert_state_matches_full_history(st, a.high, a.low, a.close, a.volume)


# --------------------------------------------------------------------------------------------- replay, real data


def raw_trades(paths) -> tuple[np.ndarray, np.ndarray]:
    """(trade time, price) of every trade, read from the raw JSON without the project's parser."""
    ts, px = [], []
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                _, _, payload = line.partition(" ")
                msg = json.loads(payload)
                data = msg.get("data", msg)
                if data.get("e") == "trade":
                    ts.append(int(data["T"]))
                    px.append(float(data["p"]))
    return np.array(ts, np.int64), np.array(px)


@pytest.fixture(scope="module")
def capture_paths():
    return [require_data(BINANCE_CAPTURE / name) for name in CAPTURE_FILES]


@pytest.fixture(scope="module")
def replayed(capture_paths) -> list[MarketState]:
    return list(states_from_recording(capture_paths))


@pytest.mark.realdata
def test_replay_yields_one_state_per_second_of_market_time(capture_paths, replayed):
    ts, _ = raw_trades(capture_paths)
    assert np.all(np.diff(ts) >= 0)
    times = np.array([st.exchange_ms for st in replayed])
    assert np.all(np.diff(times) == 1000)  # strictly increasing, in steps of every_ms, on whole seconds
    assert times[0] % 1000 == 0
    span_s = (ts[-1] - ts[0]) / 1000
    assert span_s > 600
    assert abs(len(replayed) - span_s) <= 3  # one a second once two bars exist (the first two seconds)
    assert times[0] <= ts[0] - ts[0] % 1000 + 2000
    assert times[-1] <= ts[-1]  # nothing after the end of the stream


@pytest.mark.realdata
def test_replay_last_price_is_the_last_trade_before_each_state(capture_paths, replayed):
    ts, px = raw_trades(capture_paths)
    times = np.array([st.exchange_ms for st in replayed])
    last_before = px[np.searchsorted(ts, times, side="left") - 1]  # the last trade with time < t
    np.testing.assert_array_equal([st.last_price for st in replayed], last_before)


@pytest.mark.realdata
def test_replay_states_are_complete_finite_and_deterministic(capture_paths, replayed):
    for st in replayed:
        assert st.symbol == "BTCUSDT" and st.timeframe == "1s"
        assert all(math.isfinite(x) for x in st.features())
        assert 0.0 <= st.rsi <= 100.0
    spreads = np.array([st.spread_bps for st in replayed])
    assert np.all(spreads > 0.0) and np.all(spreads < 5.0)  # BTCUSDT trades at a one-cent spread, ~0.002 bps
    assert list(states_from_recording(capture_paths)) == replayed


@pytest.mark.realdata
def test_replay_every_5s_of_1m_bars(capture_paths, replayed):
    states = list(states_from_recording(capture_paths, timeframe="1m", every_ms=5000))
    times = np.array([st.exchange_ms for st in states])
    assert np.all(np.diff(times) == 5000) and times[0] % 5000 == 0
    assert all(st.timeframe == "1m" for st in states)
    by_time = {st.exchange_ms: st for st in replayed}
    for st in states[::10]:  # same market, other bars: the same last price at the same instant
        assert st.last_price == by_time[st.exchange_ms].last_price


def test_replay_of_a_missing_file_is_a_recording_error(tmp_path):
    with pytest.raises(RecordingError):
        list(states_from_recording(tmp_path / "missing.gz"))
    with pytest.raises(ValueError):
        list(states_from_recording(tmp_path / "missing.gz", every_ms=0))
