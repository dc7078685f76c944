"""Indicators: hand-computed small cases, warm-up NaNs, the vectorised forms against plain pandas references on real
data (the Binance capture as 1s bars and the Coinbase hourly history), and the incremental states against the
vectorised forms, including a tick-by-tick replay of the forming bar."""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from app.market import indicators as ind
from app.market.candles import CandleSeries, aggregate_file, read_trades
from tests.conftest import BINANCE_CAPTURE, SHARED_DATA, require_data

COINBASE_1H = SHARED_DATA / "coinbase-btcusd-1h" / "Coinbase_BTCUSD_1h.csv"
CAPTURE_FILES = ("btcusdt_20240808.gz", "btcusdt_20240809.gz")
RTOL = 1e-9


class Bars(NamedTuple):
    open_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


@functools.cache
def capture_bars(name: str) -> Bars:
    """One capture file as 1s bars, through the live adapter and CandleSeries."""
    a = aggregate_file(require_data(BINANCE_CAPTURE / name), "1s")
    assert len(a) > 250  # about five minutes each
    cols = a.arrays()
    return Bars(*(np.array(c) for c in cols[:6]))


@functools.cache
def coinbase_bars() -> Bars:
    """The Coinbase hourly history, oldest first. The file is newest first after a banner line, and a few rows of
    2017-11-11/12 are interleaved out of order, so it is sorted by time (every hour occurs once)."""
    df = pd.read_csv(require_data(COINBASE_1H), skiprows=1)
    df["t"] = pd.to_datetime(df["date"], format="%Y-%m-%d %I-%p", utc=True)
    df = df.sort_values("t").reset_index(drop=True)
    t = df["t"]
    assert (t.diff().iloc[1:] == pd.Timedelta(hours=1)).all()
    open_ms = (t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    cols = (df[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume_btc"))
    return Bars(open_ms.to_numpy(np.int64), *cols)


DATASETS = ("binance-20240808-1s", "binance-20240809-1s", "coinbase-1h")


def real_bars(which: str) -> Bars:
    if which == "coinbase-1h":
        return coinbase_bars()
    return capture_bars(f"btcusdt_{which.split('-')[1]}.gz")


# ------------------------------------------------------------------------------------------ pandas references


def ref_ema(x: np.ndarray, span: int) -> np.ndarray:
    return pd.Series(x).ewm(span=span, adjust=False).mean().to_numpy()


def ref_wilder(s: pd.Series, n: int) -> pd.Series:
    return s.ewm(alpha=1.0 / n, adjust=False).mean()


def ref_rsi(close: np.ndarray, n: int) -> np.ndarray:
    d = pd.Series(close).diff()
    gain = ref_wilder(d.clip(lower=0.0), n)
    loss = ref_wilder(-d.clip(upper=0.0), n)
    out = 100.0 - 100.0 / (1.0 + gain / loss)  # loss 0: gain / 0 = inf -> 100
    out[(gain == 0) & (loss == 0)] = 50.0  # never moved
    out.iloc[:n] = np.nan
    return out.to_numpy()


def ref_atr(b: Bars, n: int) -> np.ndarray:
    h, lo, c = pd.Series(b.high), pd.Series(b.low), pd.Series(b.close)
    prev = c.shift()
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1)  # skips the first NaNs
    out = ref_wilder(tr, n)
    out.iloc[: n - 1] = np.nan
    return out.to_numpy()


def typical_pv(b: Bars) -> tuple[pd.Series, pd.Series]:
    v = pd.Series(b.volume)
    return (pd.Series(b.high) + pd.Series(b.low) + pd.Series(b.close)) / 3.0 * v, v


# ------------------------------------------------------------------------------------------ hand-computed


def test_ema_by_hand_and_of_a_constant():
    np.testing.assert_allclose(ind.ema(np.array([1.0, 2.0, 3.0]), 3), [1.0, 1.5, 2.25])  # alpha = 0.5
    np.testing.assert_allclose(ind.ema(np.array([4.0, 0.0]), alpha=0.25), [4.0, 3.0])
    assert np.all(ind.ema(np.full(1000, 7.5), 26) == 7.5)
    assert ind.ema(np.array([]), 5).size == 0
    assert ind.ema_last(np.array([1.0, 2.0, 3.0]), 3) == pytest.approx(2.25)


def test_ema_rejects_a_bad_span_or_alpha():
    for kwargs in ({"span": 0.5}, {"alpha": 0.0}, {"alpha": 1.5}, {}, {"span": 3, "alpha": 0.5}):
        with pytest.raises(ValueError):
            ind.ema(np.ones(3), **kwargs)


def test_rsi_of_a_rising_series_is_100_falling_0_flat_50():
    up = np.arange(100.0, 140.0)
    assert np.all(ind.rsi(up, 14)[14:] == 100.0)
    assert np.all(ind.rsi(up[::-1], 14)[14:] == 0.0)
    assert np.all(ind.rsi(np.full(40, 5.0), 14)[14:] == 50.0)


def test_rsi_by_hand():
    # changes +2, -1 with n = 2 (alpha 1/2): gains 2, 0 -> 2, 1; losses 0, 1 -> 0, 0.5; rsi = 100 * 1 / 1.5
    assert ind.rsi(np.array([10.0, 12.0, 11.0]), 2)[2] == pytest.approx(200.0 / 3.0)


def test_atr_of_constant_bars_is_zero_and_of_a_gap_is_the_gap():
    c = np.full(30, 100.0)
    assert np.all(ind.atr(c, c, c, 14)[13:] == 0.0)
    # a bar that opens 10 above the previous close, with a range of 1: true range 11 (high - prev close)
    tr = ind.true_range(np.array([100.0, 111.0]), np.array([99.0, 110.0]), np.array([100.0, 110.5]))
    np.testing.assert_array_equal(tr, [1.0, 11.0])
    np.testing.assert_allclose(ind.atr(np.full(5, 102.0), np.full(5, 98.0), np.full(5, 100.0), 3)[2:], 4.0)


def test_macd_of_a_constant_is_zero():
    m = ind.macd(np.full(100, 42.0))
    for part in m:
        assert np.all(part == 0.0)


def test_vwap_by_hand():
    high, low, close = np.array([12.0, 21.0, 30.0]), np.array([9.0, 18.0, 30.0]), np.array([9.0, 21.0, 30.0])
    vol = np.array([1.0, 3.0, 0.0])  # typical prices 10, 20, 30
    np.testing.assert_allclose(ind.vwap(high, low, close, vol), [10.0, 17.5, 17.5])
    np.testing.assert_allclose(ind.vwap(high, low, close, vol, window=1), [10.0, 20.0, np.nan])
    assert np.isnan(ind.vwap(high, low, close, np.zeros(3))).all()


def test_session_vwap_restarts_at_each_utc_day():
    day = 86_400_000
    open_ms = np.array([day - 2000, day - 1000, day, day + 1000])
    price = np.array([10.0, 20.0, 30.0, 40.0])
    vol = np.ones(4)
    np.testing.assert_allclose(ind.session_vwap(open_ms, price, price, price, vol), [10.0, 15.0, 30.0, 35.0])


def test_bollinger_by_hand_population_and_sample():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    b = ind.bollinger(x, 4, 2.0)
    assert np.isnan(b.middle[:3]).all()
    assert (b.middle[3], b.upper[3], b.lower[3]) == pytest.approx((2.5, 2.5 + 2 * 1.25**0.5, 2.5 - 2 * 1.25**0.5))
    assert ind.bollinger(x, 4, 1.0, ddof=1).upper[3] == pytest.approx(2.5 + (5 / 3) ** 0.5)
    flat = ind.bollinger(np.full(30, 61_234.56), 20)
    assert np.all(flat.upper[19:] == flat.lower[19:])  # a flat window has a stdev of exactly 0


def test_warm_up_nans():
    c = capture_bars(CAPTURE_FILES[0])
    n = 14
    r = ind.rsi(c.close, n)
    assert np.isnan(r[:n]).all() and np.isfinite(r[n:]).all()
    a = ind.atr(c.high, c.low, c.close, n)
    assert np.isnan(a[: n - 1]).all() and np.isfinite(a[n - 1 :]).all()
    bb = ind.bollinger(c.close, 20)
    assert np.isnan(bb.middle[:19]).all() and np.isfinite(bb.middle[19:]).all()
    for no_warm_up in (ind.ema(c.close, 26), *ind.macd(c.close), ind.vwap(c.high, c.low, c.close, c.volume, 60)):
        assert np.isfinite(no_warm_up).all()


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 128, 4097, 70_001])
@pytest.mark.parametrize("b", [0.0, 0.5, 0.9, 0.999])
def test_linear_recurrence_equals_the_loop(n, b):
    u = np.sin(np.arange(n) * 0.37) * 100.0 + 50.0
    y, want = 3.0, np.empty(n)
    for i, x in enumerate(u.tolist()):
        y = b * y + x
        want[i] = y
    np.testing.assert_allclose(ind.linear_recurrence(u, b, 3.0), want, rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------------------- vectorised vs pandas, real data


@pytest.mark.realdata
@pytest.mark.parametrize("which", DATASETS)
def test_ema_and_macd_match_pandas(which):
    b = real_bars(which)
    for span in (5, 12, 26, 200):
        np.testing.assert_allclose(ind.ema(b.close, span), ref_ema(b.close, span), rtol=RTOL, err_msg=str(span))
        assert ind.ema_last(b.close, span) == pytest.approx(ref_ema(b.close, span)[-1], rel=RTOL)
    m = ind.macd(b.close, 12, 26, 9)
    line = ref_ema(b.close, 12) - ref_ema(b.close, 26)
    signal = ref_ema(line, 9)
    scale = float(np.abs(line).max())  # line and histogram cross zero: compare against their own scale
    np.testing.assert_allclose(m.line, line, rtol=RTOL, atol=RTOL * scale)
    np.testing.assert_allclose(m.signal, signal, rtol=RTOL, atol=RTOL * scale)
    np.testing.assert_allclose(m.histogram, line - signal, rtol=RTOL, atol=RTOL * scale)


@pytest.mark.realdata
@pytest.mark.parametrize("which", DATASETS)
@pytest.mark.parametrize("n", [2, 14, 30])
def test_rsi_matches_pandas(which, n):
    b = real_bars(which)
    np.testing.assert_allclose(ind.rsi(b.close, n), ref_rsi(b.close, n), rtol=RTOL, atol=RTOL)


@pytest.mark.realdata
@pytest.mark.parametrize("which", DATASETS)
@pytest.mark.parametrize("n", [1, 14, 50])
def test_atr_matches_pandas(which, n):
    b = real_bars(which)
    np.testing.assert_allclose(ind.atr(b.high, b.low, b.close, n), ref_atr(b, n), rtol=RTOL)


@pytest.mark.realdata
@pytest.mark.parametrize("which", DATASETS)
def test_vwap_matches_pandas(which):
    b = real_bars(which)
    pv, v = typical_pv(b)
    np.testing.assert_allclose(ind.vwap(b.high, b.low, b.close, b.volume), pv.cumsum() / v.cumsum(), rtol=RTOL)
    for window in (1, 20, 500):
        want = pv.rolling(window, min_periods=1).sum() / v.rolling(window, min_periods=1).sum()
        got = ind.vwap(b.high, b.low, b.close, b.volume, window)
        np.testing.assert_allclose(got, want.where(v.rolling(window, min_periods=1).sum() > 0), rtol=RTOL)
    day = pd.Series(b.open_ms // 86_400_000)
    want = pv.groupby(day).cumsum() / v.groupby(day).cumsum()
    np.testing.assert_allclose(ind.session_vwap(b.open_ms, b.high, b.low, b.close, b.volume), want, rtol=RTOL)


@pytest.mark.realdata
@pytest.mark.parametrize("which", DATASETS)
@pytest.mark.parametrize("ddof", [0, 1])
def test_bollinger_matches_pandas(which, ddof):
    b = real_bars(which)
    n, k = 20, 2.0
    c = pd.Series(b.close)
    mid = c.rolling(n).mean()
    sd = c.rolling(n).std(ddof=ddof)
    got = ind.bollinger(b.close, n, k, ddof)
    np.testing.assert_allclose(got.middle, mid, rtol=RTOL)
    np.testing.assert_allclose(got.upper, mid + k * sd, rtol=RTOL)
    np.testing.assert_allclose(got.lower, mid - k * sd, rtol=RTOL)
    # pandas' rolling variance updates running moments as bars enter and leave, and its stdev drifts up to ~3e-9
    # relative on the hourly file; ours is exact to ~1e-13 (checked in rational arithmetic below)
    np.testing.assert_allclose((got.upper - got.lower) / (2 * k), sd, rtol=1e-8)
    for i in np.linspace(n - 1, b.close.size - 1, 25).astype(int):
        w = [Fraction(x) for x in b.close[i - n + 1 : i + 1]]
        m = sum(w) / n
        exact_sd = math.sqrt(sum((x - m) ** 2 for x in w) / (n - ddof))
        assert (got.upper[i] - got.middle[i]) / k == pytest.approx(exact_sd, rel=1e-12, abs=1e-12)
        assert got.middle[i] == pytest.approx(float(m), rel=1e-15)


# --------------------------------------------------------------------------------- incremental == vectorised


def run_states(b: Bars, start: int = 0, primed: bool = False) -> dict[str, np.ndarray]:
    """Every state driven bar by bar from ``start`` (primed from the bars before it when ``primed``);
    ``peek`` is checked to give the value ``update`` then returns."""
    h, lo, c, v = b.high, b.low, b.close, b.volume
    if primed:
        states = {
            "ema": ind.EmaState.from_history(c[:start], 26),
            "rsi": ind.RsiState.from_history(c[:start], 14),
            "macd": ind.MacdState.from_history(c[:start]),
            "atr": ind.AtrState.from_history(h[:start], lo[:start], c[:start], 14),
            "vwap": ind.VwapState.from_history(h[:start], lo[:start], c[:start], v[:start]),
            "vwap60": ind.VwapState.from_history(h[:start], lo[:start], c[:start], v[:start], 60),
            "boll": ind.BollingerState.from_history(c[:start], 20, 2.0),
        }
    else:
        states = {
            "ema": ind.EmaState(26),
            "rsi": ind.RsiState(14),
            "macd": ind.MacdState(),
            "atr": ind.AtrState(14),
            "vwap": ind.VwapState(),
            "vwap60": ind.VwapState(60),
            "boll": ind.BollingerState(20, 2.0),
        }
    out: dict[str, list] = {name: [] for name in states}
    for i in range(start, c.size):
        bar = {
            "ema": (c[i],),
            "rsi": (c[i],),
            "macd": (c[i],),
            "atr": (h[i], lo[i], c[i]),
            "vwap": (h[i], lo[i], c[i], v[i]),
            "vwap60": (h[i], lo[i], c[i], v[i]),
            "boll": (c[i],),
        }
        for name, s in states.items():
            args = tuple(float(x) for x in bar[name])
            peeked = s.peek(*args)
            value = s.update(*args)
            np.testing.assert_array_equal(np.asarray(peeked), np.asarray(value), err_msg=f"{name} at {i}")
            out[name].append(value)
    return {name: np.array(vals, dtype=np.float64) for name, vals in out.items()}


def vectorised(b: Bars) -> dict[str, np.ndarray]:
    h, lo, c, v = b.high, b.low, b.close, b.volume
    return {
        "ema": ind.ema(c, 26),
        "rsi": ind.rsi(c, 14),
        "macd": np.column_stack(ind.macd(c)),
        "atr": ind.atr(h, lo, c, 14),
        "vwap": ind.vwap(h, lo, c, v),
        "vwap60": ind.vwap(h, lo, c, v, 60),
        "boll": np.column_stack(ind.bollinger(c, 20, 2.0)),
    }


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rows: slice | np.ndarray) -> None:
    for name, w in want.items():
        w = w[rows]
        scale = float(np.nanmax(np.abs(w)))
        np.testing.assert_allclose(got[name], w, rtol=RTOL, atol=RTOL * scale, err_msg=name)
        if name.startswith("vwap"):  # the same running sums in the same order: bit for bit
            np.testing.assert_array_equal(got[name], w, err_msg=name)


@pytest.mark.realdata
@pytest.mark.parametrize("which", DATASETS)
def test_incremental_states_equal_the_vectorised_forms(which):
    b = real_bars(which)
    if which == "coinbase-1h":
        b = Bars(*(col[-3000:] for col in b))  # the Python loop over 20k bars adds nothing but time
    assert_same(run_states(b), vectorised(b), slice(None))


@pytest.mark.realdata
@pytest.mark.parametrize("start", [1, 5, 59, 60, 61, 200])
def test_states_primed_from_history_continue_the_vectorised_forms(start):
    b = capture_bars(CAPTURE_FILES[1])
    assert_same(run_states(b, start, primed=True), vectorised(b), slice(start, None))


@pytest.mark.realdata
def test_the_forming_bar_peeked_on_every_tick_ends_at_the_vectorised_value():
    """The live use: trades of the capture one by one into a CandleSeries; every tick peeks the forming bar,
    every bar that closes (flat ones included) advances the states. The last peek of each bar must be the value
    the vectorised form gives that bar once the history is complete."""
    trades = read_trades(require_data(BINANCE_CAPTURE / CAPTURE_FILES[0]))
    series = CandleSeries("1s", capacity=2000)
    ema, rsi, atr = ind.EmaState(12), ind.RsiState(14), ind.AtrState(14)
    vw, boll, mac = ind.VwapState(30), ind.BollingerState(20), ind.MacdState()
    closed = 0
    live: dict[int, tuple[float, ...]] = {}
    for t, p, q in zip(trades.ts_ms.tolist(), trades.price.tolist(), trades.qty.tolist(), strict=True):
        series.add_trade(t, p, q)
        a = series.arrays()
        while closed < len(a.close) - 1:  # bars that closed since the last tick
            h, lo, c, v = (float(x[closed]) for x in (a.high, a.low, a.close, a.volume))
            ema.update(c), rsi.update(c), atr.update(h, lo, c), vw.update(h, lo, c, v)
            boll.update(c), mac.update(c)
            closed += 1
        bar = series.last()
        assert bar is not None
        h, lo, c, v = bar.high, bar.low, bar.close, bar.volume
        live[len(a.close) - 1] = (
            ema.peek(c),
            rsi.peek(c),
            atr.peek(h, lo, c),
            vw.peek(h, lo, c, v),
            boll.peek(c).upper,
            mac.peek(c).histogram,
        )
    a = series.arrays()
    want = np.column_stack(
        (
            ind.ema(a.close, 12),
            ind.rsi(a.close, 14),
            ind.atr(a.high, a.low, a.close, 14),
            ind.vwap(a.high, a.low, a.close, a.volume, 30),
            ind.bollinger(a.close, 20).upper,
            ind.macd(a.close).histogram,
        )
    )
    rows = np.array(sorted(live))
    assert rows.size == int(np.count_nonzero(a.trades))  # every bar with trades was peeked
    got = np.array([live[i] for i in rows])
    scale = np.nanmax(np.abs(want), axis=0)
    for col in range(want.shape[1]):
        np.testing.assert_allclose(got[:, col], want[rows, col], rtol=RTOL, atol=RTOL * scale[col], err_msg=str(col))
    assert not math.isnan(got[-1, 1])
