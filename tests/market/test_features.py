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

# The features that follow the live price and quote; everything else is made from closed bars only.
LIVE_FIELDS = frozenset({"exchange_ms", "last_price", "vwap_dist_pct", "move_pct", "spread_bps"})


def closed_fields(st: MarketState) -> dict[str, object]:
    return {k: v for k, v in st.as_dict().items() if k not in LIVE_FIELDS}


def all_closed(series: CandleSeries) -> int:
    """The instant the newest bar held closes: every bar held is then closed."""
    return int(series.arrays().open_ms[-1]) + series.tf_ms


def ema_by_hand(x, alpha: float) -> float:
    e = float(x[0])
    for v in x[1:]:
        e += alpha * (float(v) - e)
    return e


def test_a_rising_market_reads_as_rising():
    st = state_of(series_of(np.linspace(100.0, 200.0, 120)))
    assert st.last_price == 200.0
    assert min(st.ret_1, st.ret_5, st.ret_15, st.ret_60) > 0.0
    assert st.ret_1 < st.ret_5 < st.ret_15 < st.ret_60
    assert st.ema_fast > st.ema_slow and st.ema_spread_pct > 0.0
    assert st.rsi > 50.0
    assert st.vwap_dist_pct > 0.0  # above its volume-weighted average
    assert st.atr_pct > 0.0
    assert st.move_pct > 0.0  # the forming bar is up on the last close


def test_a_falling_market_reads_as_falling():
    st = state_of(series_of(np.linspace(200.0, 100.0, 120)))
    assert max(st.ret_1, st.ret_5, st.ret_15, st.ret_60, st.move_pct) < 0.0
    assert st.ema_spread_pct < 0.0
    assert st.rsi < 50.0
    assert st.vwap_dist_pct < 0.0


def test_every_feature_equals_a_hand_computation_on_a_small_series():
    """Four closed bars and a forming one: the forming bar gives the live price and nothing else."""
    s = series_of([100.0, 102.0, 101.0, 104.0, 105.0], [1.0, 2.0, 3.0, 4.0, 10.0])
    now = T0 + 4 * S + 500  # half way through the fifth bar
    st = state_of(s, now_ms=now, quote_bid=104.9, quote_ask=105.1)
    close = [100.0, 102.0, 101.0, 104.0]  # the closed bars (series_of: open at the previous close, +-1 around)
    high = [101.0, 103.0, 103.0, 105.0]
    low = [99.0, 99.0, 100.0, 100.0]
    volume = [1.0, 2.0, 3.0, 4.0]
    assert (st.exchange_ms, st.bar_close_ms) == (now, T0 + 4 * S)
    assert st.last_price == 105.0
    assert st.ret_1 == pytest.approx((104.0 / 101.0 - 1.0) * 100.0)
    assert st.ret_5 == st.ret_15 == st.ret_60 == pytest.approx(4.0)  # against the oldest closed close, 100
    fast, slow = ema_by_hand(close, 2.0 / 13.0), ema_by_hand(close, 2.0 / 27.0)
    assert (st.ema_fast, st.ema_slow) == (pytest.approx(fast), pytest.approx(slow))
    assert st.ema_spread_pct == pytest.approx((fast - slow) / slow * 100.0)
    gain = ema_by_hand([2.0, 0.0, 3.0], 1.0 / 14.0)  # changes +2, -1, +3
    loss = ema_by_hand([0.0, 1.0, 0.0], 1.0 / 14.0)
    assert st.rsi == pytest.approx(100.0 * gain / (gain + loss))
    true_ranges = [2.0, 4.0, 3.0, 5.0]  # high - low, widened by the gap from the previous close
    assert st.atr_pct == pytest.approx(ema_by_hand(true_ranges, 1.0 / 14.0) / 104.0 * 100.0)
    vwap = sum((h + lo + c) / 3.0 * v for h, lo, c, v in zip(high, low, close, volume, strict=True)) / sum(volume)
    assert st.vwap == pytest.approx(vwap)
    assert st.vwap_dist_pct == pytest.approx((105.0 - vwap) / vwap * 100.0)
    assert st.move_pct == pytest.approx((105.0 / 104.0 - 1.0) * 100.0)
    assert st.volume_ratio == 1.0  # fewer than 21 closed bars
    assert st.spread_bps == pytest.approx(0.2 / 105.0 * 1e4)


def test_returns_are_percent_over_k_closed_bars_and_use_the_oldest_close_when_short():
    closes = 100.0 * 1.01 ** np.arange(80)  # +1% a bar
    s = series_of(closes)
    st = state_of(s, now_ms=all_closed(s))
    for k, got in zip(RETURN_BARS, (st.ret_1, st.ret_5, st.ret_15, st.ret_60), strict=True):
        assert got == pytest.approx((1.01**k - 1.0) * 100.0, rel=1e-12)
    short = series_of([100.0, 110.0, 121.0])
    st = state_of(short, now_ms=all_closed(short))
    assert st.ret_1 == pytest.approx(10.0)
    assert st.ret_5 == st.ret_15 == st.ret_60 == pytest.approx(21.0)  # against the oldest close, 100
    forming = state_of(short)  # 121 is forming: two closed bars, 100 and 110
    assert forming.ret_1 == forming.ret_60 == pytest.approx(10.0)
    assert forming.move_pct == pytest.approx(10.0)


def test_within_one_bar_only_the_live_features_move():
    rng = np.random.default_rng(7)
    s = series_of(100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, 40))), rng.uniform(1.0, 5.0, 40))
    s.add_trade(T0 + 40 * S, 101.0, 2.0)  # a new bar opens, then trades through it
    states = []
    for i, (dt, price, bid) in enumerate([(100, 101.0, 100.9), (350, 104.0, 103.5), (990, 97.0, 96.0)]):
        s.add_trade(T0 + 40 * S + dt - 1, price, 3.0 + i)
        states.append(state_of(s, now_ms=T0 + 40 * S + dt, quote_bid=bid, quote_ask=price + 0.1))
    first = closed_fields(states[0])
    assert all(closed_fields(st) == first for st in states[1:])  # ret_1, EMAs, RSI, ATR, VWAP, volume: unchanged
    assert first["bar_close_ms"] == T0 + 40 * S
    for name in ("exchange_ms", "last_price", "vwap_dist_pct", "move_pct", "spread_bps"):
        assert len({getattr(st, name) for st in states}) == 3, name
    assert [st.last_price for st in states] == [101.0, 104.0, 97.0]


def test_at_a_bar_boundary_the_just_closed_bar_enters_ret_1():
    s = series_of([100.0, 101.0, 103.0, 102.0])  # 102 forming
    before = state_of(s, now_ms=T0 + 4 * S - 1)
    assert before.ret_1 == pytest.approx((103.0 / 101.0 - 1.0) * 100.0)
    assert before.bar_close_ms == T0 + 3 * S
    at = state_of(s, now_ms=T0 + 4 * S)  # its close: 102 is a closed bar now
    assert at.ret_1 == pytest.approx((102.0 / 103.0 - 1.0) * 100.0)
    assert at.bar_close_ms == T0 + 4 * S and at.exchange_ms == T0 + 4 * S
    assert at.move_pct == 0.0 and at.last_price == 102.0


def test_a_forming_bar_seconds_old_never_drives_ret_1():
    s = series_of(np.full(30, 100.0), timeframe="1m", t0=T0)
    minute = 60 * S
    s.add_trade(T0 + 30 * minute + 2 * S, 110.0, 1.0)  # a +10 % trade 2 s into a new 1 m bar
    st = state_of(s, now_ms=T0 + 30 * minute + 3 * S)
    assert st.ret_1 == 0.0 and st.ret_60 == 0.0 and st.rsi == 50.0  # the closed bars are flat
    assert st.move_pct == pytest.approx(10.0)  # the jump is live, and says so
    assert st.vwap_dist_pct == pytest.approx(10.0)
    assert st.bar_close_ms == T0 + 30 * minute


def test_the_state_is_never_stamped_in_the_future():
    s = series_of(np.arange(100.0, 130.0), timeframe="1m")
    last_trade = T0 + 29 * 60 * S + 5 * S
    s.add_trade(last_trade, 129.5, 1.0)
    assert state_of(s).exchange_ms <= last_trade  # just after the newest trade: never its bar's close ahead
    st = state_of(s, now_ms=last_trade + 1)
    assert st.exchange_ms == last_trade + 1 and st.bar_close_ms <= st.exchange_ms
    for now in (T0 + 30 * 60 * S, T0 + 30 * 60 * S + 59 * S, T0 + 33 * 60 * S + 1):
        got = state_of(s, now_ms=now)
        assert got.exchange_ms == now and got.bar_close_ms <= now < got.bar_close_ms + 60 * S


def test_a_flat_market_is_neutral_and_finite():
    st = state_of(series_of(np.full(50, 61_000.0), spread=0.0))
    assert (st.ret_1, st.ret_60, st.ema_spread_pct, st.atr_pct, st.vwap_dist_pct, st.move_pct) == (0.0,) * 6
    assert st.rsi == 50.0
    assert st.volume_ratio == 1.0


def test_atr_pct_and_spread_of_known_bars_and_quote():
    st = state_of(series_of(np.full(40, 100.0), spread=1.0), quote_bid=100.0, quote_ask=100.1)
    assert st.atr_pct == pytest.approx(2.0)  # every true range is 2 at a price of 100
    assert st.spread_bps == pytest.approx(0.1 / 100.05 * 1e4)


@pytest.mark.parametrize(("bid", "ask"), [(None, None), (100.0, None), (None, 100.0), (0.0, 100.0), (math.nan, 1.0)])
def test_no_usable_quote_gives_a_zero_spread(bid, ask):
    assert spread_bps(bid, ask) == 0.0
    assert state_of(series_of([1.0, 2.0, 3.0]), quote_bid=bid, quote_ask=ask).spread_bps == 0.0


def test_volume_ratio_is_the_last_closed_bar_over_the_20_before():
    vols = [1.0] * 5 + [2.0] * 20 + [7.0] + [500.0]  # the forming bar (500) does not count
    assert state_of(series_of(np.full(27, 10.0), vols)).volume_ratio == pytest.approx(3.5)
    assert state_of(series_of(np.full(22, 10.0), [2.0] * 20 + [7.0, 1.0])).volume_ratio == pytest.approx(3.5)
    assert state_of(series_of(np.full(21, 10.0), [2.0] * 19 + [7.0, 1.0])).volume_ratio == 1.0  # 19 before: too few
    assert state_of(series_of(np.full(22, 10.0), [0.0] * 20 + [7.0, 1.0])).volume_ratio == VOLUME_RATIO_MAX
    assert state_of(series_of(np.full(22, 10.0), [0.0] * 21 + [1.0])).volume_ratio == 1.0
    closed = series_of(np.full(22, 10.0), [1.0] + [2.0] * 20 + [7.0])
    assert state_of(closed, now_ms=all_closed(closed)).volume_ratio == pytest.approx(3.5)  # 7 has closed


def test_none_below_the_minimum_of_closed_bars():
    assert MIN_BARS == 2
    assert compute_state(CandleSeries("1s"), symbol="X", quote_bid=None, quote_ask=None) is None
    assert compute_state(series_of([100.0]), symbol="X", quote_bid=None, quote_ask=None) is None
    two = series_of([100.0, 101.0])
    assert compute_state(two, symbol="X", quote_bid=None, quote_ask=None) is None  # one closed, one forming
    assert compute_state(two, symbol="X", quote_bid=None, quote_ask=None, now_ms=T0 + 2 * S - 1) is None
    st = state_of(two, now_ms=T0 + 2 * S)
    assert st.ret_1 == pytest.approx(1.0)


def test_exchange_time_position_and_symbol_pass_through():
    st = state_of(
        series_of(np.arange(1.0, 31.0)),
        symbol="ETHUSDT",
        position=PositionState.LONG,
        position_pnl_sign=1,
    )
    assert (st.symbol, st.timeframe, st.position, st.position_pnl_sign) == ("ETHUSDT", "1s", PositionState.LONG, 1)
    assert st.exchange_ms == st.bar_close_ms == T0 + 29 * S  # no now: the forming bar's open, never its close
    assert len(st.features()) == len(FEATURE_NAMES) and FEATURE_NAMES[-1] == "move_pct"


def test_a_quiet_symbol_counts_the_bars_without_trades_as_flat_closed_bars():
    s = series_of(np.arange(100.0, 130.0), np.full(30, 2.0))
    last_open = T0 + 29 * S
    assert closed_fields(state_of(s, now_ms=last_open + S)) == closed_fields(state_of(s, now_ms=last_open + 2 * S - 1))
    later = state_of(s, now_ms=last_open + 3 * S + 1)  # two flat bars closed since, the third forming
    assert (later.exchange_ms, later.bar_close_ms) == (last_open + 3 * S + 1, last_open + 3 * S)
    assert later.last_price == 129.0 and later.move_pct == 0.0
    assert later.ret_1 == 0.0 and later.ret_5 == pytest.approx((129.0 / 126.0 - 1) * 100)  # 129, 129, 129, 128 ...
    assert later.volume_ratio == 0.0  # the last closed bar had no trade
    # Exactly the series the next trade would leave behind once CandleSeries fills the flat bars, all closed.
    a = s.arrays()
    filled = CandleSeries("1s", capacity=40)
    flat = np.full(2, 129.0)
    filled.load_history(
        np.concatenate((a.open_ms, last_open + S * np.arange(1, 3))),
        *(np.concatenate((col, flat)) for col in (a.open, a.high, a.low, a.close)),
        np.concatenate((a.volume, np.zeros(2))),
        np.concatenate((a.trades, np.zeros(2, np.int64))),
    )
    want = state_of(filled, now_ms=last_open + 3 * S + 1)
    assert later == want
    with pytest.raises(ValueError, match="before the newest bar"):
        compute_state(s, symbol="X", quote_bid=None, quote_ask=None, now_ms=last_open - 1)


def test_a_series_padded_to_two_closed_bars_by_now_ms_has_a_state():
    s = series_of([100.0])
    assert compute_state(s, symbol="X", quote_bid=None, quote_ask=None, now_ms=T0) is None  # forming
    assert compute_state(s, symbol="X", quote_bid=None, quote_ask=None, now_ms=T0 + S) is None  # one closed
    st = state_of(s, now_ms=T0 + 2 * S)
    assert st.ret_1 == 0.0 and st.volume_ratio == 1.0 and st.bar_close_ms == T0 + 2 * S


def test_states_are_finite_on_random_walks_with_gaps_and_silent_bars():
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(2, 80))
        closes = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
        vols = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.0, 3.0, n))
        s = series_of(closes, vols, spread=float(rng.uniform(0.0, 1.0)))
        for now in (None, all_closed(s) - 1, all_closed(s), all_closed(s) + int(rng.integers(1, 900)) * S):
            st = compute_state(s, symbol="X", quote_bid=None, quote_ask=None, now_ms=now)
            if st is None:
                continue
            values = (st.last_price, st.ema_fast, st.ema_slow, st.vwap, *st.features())
            assert all(math.isfinite(v) for v in values), (trial, now, st)
            assert 0.0 <= st.rsi <= 100.0


def test_tail_length_covers_the_slowest_smoothing():
    assert tail_length() == 500
    assert tail_length(12, 200) > 500  # a 200-bar EMA needs a longer memory
    assert (1.0 - 2.0 / 201.0) ** tail_length(12, 200) < 1e-15


# ------------------------------------------------------------------------------- tail vs full history, real data


def assert_state_matches_full_history(st: MarketState, high, low, close, volume, rel: float = 1e-6) -> None:
    """The state computed on the tail, with every bar given closed, against the indicators over every bar."""
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
    want["volume_ratio"] = volume[-1] / volume[-21:-1].mean()
    want["move_pct"] = 0.0
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
        st = state_of(s, symbol="BTCUSD", now_ms=all_closed(s))
        assert_state_matches_full_history(st, a.high, a.low, a.close, a.volume, rel=1e-9)
        assert st.exchange_ms == st.bar_close_ms == int(b.open_ms[end - 1]) + 3_600_000


@pytest.mark.realdata
def test_the_tail_equals_the_full_history_on_the_capture_1s_bars():
    """Both capture files (one session) as 1s bars: about 650, so the 500-bar tail is a strict part of them."""
    parts = [read_trades(require_data(BINANCE_CAPTURE / name)) for name in CAPTURE_FILES]
    s = CandleSeries("1s", capacity=2000)
    s.add_trades(*(np.concatenate([getattr(p, col) for p in parts]) for col in ("ts_ms", "price", "qty")))
    a = s.arrays()
    assert len(s) > tail_length()  # the tail is a strict part of the series
    st = state_of(s, quote_bid=61_600.0, quote_ask=61_600.01, now_ms=all_closed(s))
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


@pytest.mark.realdata
def test_replay_of_1m_bars_every_5s_moves_only_the_live_features_within_a_bar(capture_paths):
    states = list(states_from_recording(capture_paths, timeframe="1m", every_ms=5000))
    by_bar: dict[int, list[MarketState]] = {}
    for st in states:
        assert st.bar_close_ms <= st.exchange_ms < st.bar_close_ms + 60_000  # made after its bars, never ahead
        by_bar.setdefault(st.bar_close_ms, []).append(st)
    full = [group for group in by_bar.values() if len(group) == 12]
    assert len(full) >= 8  # the capture is about 11 minutes long
    for group in full:
        assert all(closed_fields(st) == closed_fields(group[0]) for st in group)
    assert len({st.move_pct for group in full for st in group}) > len(full)  # the live price did move


def test_replay_of_a_missing_file_is_a_recording_error(tmp_path):
    with pytest.raises(RecordingError):
        list(states_from_recording(tmp_path / "missing.gz"))
    with pytest.raises(ValueError):
        list(states_from_recording(tmp_path / "missing.gz", every_ms=0))
