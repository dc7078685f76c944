"""Candles from trades: hand-built edge cases, vectorised == per-trade, and the real Binance capture checked
bar by bar against an independent pandas resample of the raw JSON."""

from __future__ import annotations

import csv
import functools
import gzip
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.market.adapters import binance
from app.market.candles import (
    CSV_HEADER,
    TIMEFRAMES,
    Bar,
    CandleAggregator,
    CandleSeries,
    aggregate_file,
    candles_main,
    read_trades,
    write_csv,
)
from app.market.recording import iter_frames
from app.models import Side, Trade

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CAPTURE = DATA / "binance-spot-btcusdt-capture"
CAPTURE_FILES = ("btcusdt_20240808.gz", "btcusdt_20240809.gz")
PROJECT = Path(__file__).resolve().parents[2]

T0 = 1_723_161_600_000  # 2024-08-09 00:00:00 UTC, a multiple of every timeframe
S = 1000  # one 1s bar


def rows(series: CandleSeries) -> list[tuple]:
    """The bars as plain tuples, for exact comparison with hand-written expectations."""
    return list(zip(*(col.tolist() for col in series.arrays()), strict=True))


def feed(series: CandleSeries, trades: list[tuple[int, float, float]]) -> None:
    for ts, price, qty in trades:
        series.add_trade(ts, price, qty)


def assert_same_bars(a: CandleSeries, b: CandleSeries) -> None:
    """Equal bars; volumes to 1e-12 because a vectorised sum adds in a different order than a loop."""
    x, y = a.arrays(), b.arrays()
    for name in ("open_ms", "open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
    np.testing.assert_allclose(x.volume, y.volume, rtol=1e-12, atol=0, err_msg="volume")


# ------------------------------------------------------------------------------------------- bar rules


def test_a_trade_exactly_on_the_boundary_opens_the_new_bar():
    s = CandleSeries("1s")
    feed(s, [(T0 + 999, 10.0, 1.0), (T0 + S, 11.0, 2.0)])
    assert rows(s) == [(T0, 10.0, 10.0, 10.0, 10.0, 1.0, 1), (T0 + S, 11.0, 11.0, 11.0, 11.0, 2.0, 1)]


def test_intervals_without_trades_become_flat_bars_at_the_previous_close():
    s = CandleSeries("1s")
    feed(s, [(T0, 10.0, 1.0), (T0 + 500, 12.0, 1.0), (T0 + 3 * S + 1, 9.0, 0.5)])
    assert rows(s) == [
        (T0, 10.0, 12.0, 10.0, 12.0, 2.0, 2),
        (T0 + S, 12.0, 12.0, 12.0, 12.0, 0.0, 0),
        (T0 + 2 * S, 12.0, 12.0, 12.0, 12.0, 0.0, 0),
        (T0 + 3 * S, 9.0, 9.0, 9.0, 9.0, 0.5, 1),
    ]


def test_out_of_order_trades_within_a_bar_set_open_and_close_by_timestamp():
    s = CandleSeries("1s")
    feed(s, [(T0 + 500, 10.0, 1.0), (T0 + 200, 11.0, 1.0), (T0 + 800, 9.0, 1.0), (T0 + 100, 12.0, 1.0)])
    feed(s, [(T0 + 700, 13.0, 1.0)])
    assert rows(s) == [(T0, 12.0, 13.0, 9.0, 9.0, 5.0, 5)]


def test_equal_timestamps_keep_arrival_order_the_first_opens_the_last_closes():
    s = CandleSeries("1s")
    feed(s, [(T0 + 300, 1.0, 1.0), (T0 + 300, 2.0, 1.0), (T0 + 100, 4.0, 1.0), (T0 + 100, 5.0, 1.0)])
    feed(s, [(T0 + 300, 3.0, 1.0)])
    assert rows(s) == [(T0, 4.0, 5.0, 1.0, 3.0, 5.0, 5)]


def test_a_late_trade_updates_its_older_bar_by_the_timestamp_rule():
    s = CandleSeries("1s")
    feed(s, [(T0 + 100, 10.0, 1.0), (T0 + 900, 11.0, 1.0), (T0 + S + 5, 20.0, 1.0), (T0 + 2 * S, 30.0, 1.0)])
    version = s.version
    s.add_trade(T0 + 50, 8.0, 0.5)  # earlier than the bar's first trade: the new open and low
    s.add_trade(T0 + 950, 10.5, 0.25)  # later than its last: the new close
    s.add_trade(T0 + 500, 12.0, 0.25)  # in between: only high, volume and count
    assert s.version == version + 3
    assert rows(s) == [
        (T0, 8.0, 12.0, 8.0, 10.5, 3.0, 5),
        (T0 + S, 20.0, 20.0, 20.0, 20.0, 1.0, 1),
        (T0 + 2 * S, 30.0, 30.0, 30.0, 30.0, 1.0, 1),
    ]
    assert s.late_dropped == 0


def test_a_late_trade_in_a_flat_bar_makes_it_real_and_moves_the_flat_bars_after_it():
    s = CandleSeries("1s")
    feed(s, [(T0, 10.0, 1.0), (T0 + 4 * S, 20.0, 1.0)])
    s.add_trade(T0 + S + 10, 15.0, 2.0)
    assert rows(s) == [
        (T0, 10.0, 10.0, 10.0, 10.0, 1.0, 1),
        (T0 + S, 15.0, 15.0, 15.0, 15.0, 2.0, 1),
        (T0 + 2 * S, 15.0, 15.0, 15.0, 15.0, 0.0, 0),
        (T0 + 3 * S, 15.0, 15.0, 15.0, 15.0, 0.0, 0),
        (T0 + 4 * S, 20.0, 20.0, 20.0, 20.0, 1.0, 1),
    ]
    s.add_trade(T0 + 999, 11.0, 1.0)  # a new close for the first bar; bar 1 has trades, so nothing moves
    assert rows(s)[:2] == [(T0, 10.0, 11.0, 10.0, 11.0, 2.0, 2), (T0 + S, 15.0, 15.0, 15.0, 15.0, 2.0, 1)]


def test_a_trade_older_than_the_buffer_is_dropped_and_counted():
    s = CandleSeries("1s", capacity=3)
    feed(s, [(T0 + k * S, 10.0 + k, 1.0) for k in range(5)])
    before, version = rows(s), s.version
    assert [r[0] for r in before] == [T0 + 2 * S, T0 + 3 * S, T0 + 4 * S]
    s.add_trade(T0 + S + 1, 99.0, 1.0)
    assert (s.late_dropped, rows(s), s.version) == (1, before, version)
    s.add_trades(np.array([T0 + 1, T0 + 2 * S + 1]), np.array([1.0, 50.0]), np.array([1.0, 1.0]))
    assert s.late_dropped == 2
    assert rows(s)[0] == (T0 + 2 * S, 12.0, 50.0, 12.0, 50.0, 2.0, 2)


def test_a_gap_longer_than_the_buffer_starts_afresh_a_shorter_one_is_filled():
    s = CandleSeries("1s", capacity=4)
    feed(s, [(T0, 10.0, 1.0), (T0 + 4 * S, 11.0, 1.0)])  # 3 empty bars: filled, the first bar falls out
    assert rows(s) == [
        (T0 + S, 10.0, 10.0, 10.0, 10.0, 0.0, 0),
        (T0 + 2 * S, 10.0, 10.0, 10.0, 10.0, 0.0, 0),
        (T0 + 3 * S, 10.0, 10.0, 10.0, 10.0, 0.0, 0),
        (T0 + 4 * S, 11.0, 11.0, 11.0, 11.0, 1.0, 1),
    ]
    s.add_trade(T0 + 9 * S, 12.0, 1.0)  # 4 empty bars would leave nothing but flat bars
    assert rows(s) == [(T0 + 9 * S, 12.0, 12.0, 12.0, 12.0, 1.0, 1)]


def test_compaction_keeps_the_newest_bars_intact_in_a_fixed_buffer():
    capacity = 5
    s = CandleSeries("1s", capacity=capacity)
    expected: list[tuple] = []
    for k in range(37):  # several compactions
        o = T0 + k * S
        feed(s, [(o + 300, 100.0 + k, 1.0), (o + 100, 90.0 + k, 0.5), (o + 600, 95.0 + k, 0.25)])
        expected.append((o, 90.0 + k, 100.0 + k, 90.0 + k, 95.0 + k, 1.75, 3))
        assert rows(s) == expected[-capacity:], k
    a = s.arrays()
    assert a.close.base.size == 2 * capacity  # a view into the fixed buffer, never a copy or a bigger array
    assert np.shares_memory(a.close, s.arrays().close)
    assert not a.close.flags.writeable
    # Per-bar trade times moved with the bars: a late trade still obeys the timestamp rule after compaction.
    oldest = T0 + 32 * S
    s.add_trade(oldest + 50, 80.0, 1.0)
    s.add_trade(oldest + 700, 96.0, 1.0)
    assert rows(s)[0] == (oldest, 80.0, 132.0, 80.0, 96.0, 3.75, 5)


def test_history_then_live_trades_merge_into_the_last_history_bar():
    m = 60_000
    s = CandleSeries("1m")
    s.load_history(
        np.array([T0, T0 + m, T0 + 3 * m]),  # the missing minute is filled flat
        np.array([10.0, 11.0, 12.0]),
        np.array([11.0, 12.5, 13.0]),
        np.array([9.5, 10.5, 11.5]),
        np.array([11.0, 12.0, 12.5]),
        np.array([5.0, 6.0, 7.0]),
        np.array([50, 60, 70]),
    )
    assert len(s) == 4 and rows(s)[2] == (T0 + 2 * m, 12.0, 12.0, 12.0, 12.0, 0.0, 0)
    s.add_trade(T0 + 3 * m + 100, 13.5, 1.0)  # inside the last history bar: merges, becomes the close
    s.add_trade(T0 + 3 * m + 200, 11.0, 1.0)
    assert len(s) == 4
    assert s.last() == Bar(T0 + 3 * m, 12.0, 13.5, 11.0, 11.0, 9.0, 72)
    s.add_trades(np.array([T0 + 3 * m + 300, T0 + 4 * m]), np.array([12.0, 14.0]), np.array([1.0, 2.0]))
    assert rows(s)[-2:] == [
        (T0 + 3 * m, 12.0, 13.5, 11.0, 12.0, 10.0, 73),
        (T0 + 4 * m, 14.0, 14.0, 14.0, 14.0, 2.0, 1),
    ]


def test_history_arriving_after_live_trades_replaces_the_bars_it_covers_and_keeps_newer_ones():
    m = 60_000
    s = CandleSeries("1m")
    feed(s, [(T0 + m + 5, 50.0, 1.0), (T0 + 2 * m + 5, 60.0, 1.0)])
    s.load_history(
        *(np.array(v) for v in ([T0, T0 + m], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [3, 4], [5, 6]))
    )
    assert rows(s) == [
        (T0, 1.0, 1.0, 1.0, 1.0, 3.0, 5),
        (T0 + m, 2.0, 2.0, 2.0, 2.0, 4.0, 6),
        (T0 + 2 * m, 60.0, 60.0, 60.0, 60.0, 1.0, 1),
    ]


def test_history_must_be_aligned_and_increasing():
    s = CandleSeries("1m")
    ones = np.ones(2)
    with pytest.raises(ValueError, match="multiples"):
        s.load_history(np.array([T0 + 1, T0 + 60_000]), ones, ones, ones, ones, ones, np.ones(2, np.int64))
    with pytest.raises(ValueError, match="multiples"):
        s.load_history(np.array([T0, T0]), ones, ones, ones, ones, ones, np.ones(2, np.int64))


def test_last_and_version_follow_every_change():
    s = CandleSeries("1m")
    assert (s.last(), len(s), s.version) == (None, 0, 0)
    s.add_trade(T0 + 10, 5.0, 1.0)
    s.add_trade(T0 + 20, 6.0, 2.0)
    assert s.last() == Bar(T0, 5.0, 6.0, 5.0, 6.0, 3.0, 2) and s.version == 2
    s.add_trades(np.array([], np.int64), np.array([]), np.array([]))
    assert s.version == 2
    assert (s.timeframe, s.tf_ms) == ("1m", 60_000)


def test_unknown_timeframe_is_refused():
    with pytest.raises(ValueError, match="unknown timeframe"):
        CandleSeries("2m")


# ------------------------------------------------------------------------------ vectorised == per-trade


def random_trades(rng: np.random.Generator, n: int, tf_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In time order, with equal timestamps, busy and empty bars, and now and then a very long pause."""
    steps = rng.choice(
        [0, 0, 1, 7, tf_ms // 3, tf_ms, 3 * tf_ms, 40 * tf_ms], size=n, p=[*[0.2] * 4, 0.1, 0.05, 0.03, 0.02]
    )
    ts = T0 + np.cumsum(steps).astype(np.int64)
    price = np.round(100 + np.cumsum(rng.normal(0, 0.05, n)), 2)
    qty = np.round(rng.exponential(0.3, n), 5)
    return ts, price, qty


def split(n: int, rng: np.random.Generator) -> list[slice]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(25, n - 1), replace=False))
    edges = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize("capacity", [3, 50, 100_000])
@pytest.mark.parametrize("timeframe", ["1s", "1m"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["in_order", "shuffled"])
def test_add_trades_gives_what_the_add_trade_loop_gives(capacity, timeframe, shuffle):
    rng = np.random.default_rng(capacity + len(timeframe))
    ts, price, qty = random_trades(rng, 5000, TIMEFRAMES[timeframe])
    if shuffle:
        order = rng.permutation(ts.size)
        ts, price, qty = ts[order], price[order], qty[order]
    one_by_one, batched = CandleSeries(timeframe, capacity), CandleSeries(timeframe, capacity)
    feed(one_by_one, list(zip(ts.tolist(), price.tolist(), qty.tolist(), strict=True)))
    for part in split(ts.size, rng):  # batches of random size continue each other's bars
        batched.add_trades(ts[part], price[part], qty[part])
    assert_same_bars(batched, one_by_one)
    assert batched.late_dropped == one_by_one.late_dropped
    assert len(batched) <= capacity


def test_reordered_trades_give_the_same_bars_as_time_order():
    rng = np.random.default_rng(7)
    ts = T0 + np.sort(rng.choice(600_000, size=4000, replace=False)).astype(np.int64)  # no equal times
    price = np.round(100 + np.cumsum(rng.normal(0, 0.05, ts.size)), 2)
    qty = np.round(rng.exponential(0.3, ts.size), 5)
    jitter = np.argsort(np.arange(ts.size) + rng.uniform(0, 30, ts.size))  # late by up to ~30 trades
    jitter = np.concatenate(([0], jitter[jitter != 0]))  # the earliest first, so nothing predates the buffer
    for tf in ("1s", "1m"):
        in_order, reordered = CandleSeries(tf), CandleSeries(tf)
        in_order.add_trades(ts, price, qty)
        reordered.add_trades(ts[jitter], price[jitter], qty[jitter])
        assert_same_bars(reordered, in_order)
        assert reordered.late_dropped == 0


def make_trade(symbol: str, ts: int, price: float, qty: float, trade_id: int) -> Trade:
    return Trade(symbol, price, qty, Side.BUY, trade_id, ts, 0)


def test_aggregator_keeps_one_series_per_timeframe_and_ignores_other_symbols():
    rng = np.random.default_rng(3)
    ts, price, qty = random_trades(rng, 3000, 1000)
    trades = [
        make_trade("BTCUSDT", t, p, q, i) for i, (t, p, q) in enumerate(zip(ts, price, qty, strict=True))
    ]
    trades.insert(10, make_trade("ETHUSDT", int(ts[10]), 3000.0, 1.0, 0))
    single, batched = CandleAggregator("BTCUSDT"), CandleAggregator("BTCUSDT")
    for t in trades:
        single.on_trade(t)
    for k in range(0, len(trades), 500):
        batched.on_trades(trades[k : k + 500])
    batched.on_trades(trades[:0])
    assert single.timeframes == tuple(TIMEFRAMES)
    for tf in TIMEFRAMES:
        assert_same_bars(batched.series(tf), single.series(tf))
        reference = CandleSeries(tf)
        reference.add_trades(ts, price, qty)
        assert_same_bars(single.series(tf), reference)
    assert (single.trades_seen, single.other_symbol) == (3000, 1)
    assert (batched.trades_seen, batched.other_symbol) == (3000, 1)
    with pytest.raises(KeyError, match="no '2h' series"):
        single.series("2h")


# --------------------------------------------------------------------------------- the real capture


PANDAS_RULE = {"1s": "1s", "1m": "1min", "5m": "5min"}


@pytest.fixture(scope="module")
def capture() -> Path:
    if not all((CAPTURE / name).exists() for name in CAPTURE_FILES):
        pytest.skip(f"the Binance capture is not at {CAPTURE} (../shared/data beside the project)")
    return CAPTURE


@functools.cache
def reference_trades(*paths: Path) -> pd.DataFrame:
    """Trades read with nothing of ours: gzip, json, and the field names from Binance's documentation."""
    rows = []
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                _, _, raw = line.partition(" ")
                msg = json.loads(raw)
                data = msg.get("data", msg)
                if data.get("e") == "trade":
                    rows.append((data["T"], float(data["p"]), float(data["q"]), data["t"]))
    return pd.DataFrame(rows, columns=["T", "p", "q", "t"])


def reference_bars(trades: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    df = trades.sort_values(["T", "t"], kind="stable")
    df = df.assign(time=pd.to_datetime(df["T"], unit="ms"))
    grouped = df.resample(PANDAS_RULE[timeframe], on="time")
    bars = grouped["p"].ohlc()
    bars["volume"] = grouped["q"].sum()
    bars["trades"] = grouped["p"].count()
    bars["close"] = bars["close"].ffill()  # a bar without trades stands at the previous close
    for col in ("open", "high", "low"):
        bars[col] = bars[col].fillna(bars["close"])
    bars["open_ms"] = (bars.index - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)
    return bars.reset_index(drop=True)


def assert_matches_reference(series: CandleSeries, ref: pd.DataFrame) -> None:
    a = series.arrays()
    assert len(a.open_ms) == len(ref) > 0
    np.testing.assert_array_equal(a.open_ms, ref["open_ms"].to_numpy(np.int64))
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(a, col), ref[col].to_numpy(np.float64), err_msg=col)
    np.testing.assert_allclose(a.volume, ref["volume"].to_numpy(np.float64), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(a.trades, ref["trades"].to_numpy(np.int64))


@pytest.mark.realdata
@pytest.mark.parametrize("name", CAPTURE_FILES)
@pytest.mark.parametrize("timeframe", ["1s", "1m", "5m"])
def test_aggregate_file_matches_pandas_on_the_real_capture(capture, name, timeframe):
    path = capture / name
    series = aggregate_file(path, timeframe)
    assert_matches_reference(series, reference_bars(reference_trades(path), timeframe))
    assert series.late_dropped == 0


@pytest.mark.realdata
@pytest.mark.parametrize("timeframe", ["1s", "1m", "5m"])
def test_the_live_path_over_both_files_matches_pandas_as_one_session(capture, timeframe):
    """Both files are one session: the bar at 00:00:01 begins in one file and ends in the next."""
    paths = tuple(capture / name for name in CAPTURE_FILES)
    agg = CandleAggregator("BTCUSDT", timeframes=(timeframe,))
    for path in paths:
        batch: list[Trade] = []
        for recv_ns, raw in iter_frames(path):
            batch.extend(ev for ev in binance.parse(raw, recv_ns or 0) if isinstance(ev, Trade))
            if len(batch) >= 40:  # the size of a bus batch
                agg.on_trades(batch)
                batch = []
        agg.on_trades(batch)
    assert agg.trades_seen == len(reference_trades(*paths)) == 19_904
    assert_matches_reference(agg.series(timeframe), reference_bars(reference_trades(*paths), timeframe))


# ---------------------------------------------------------------------------------------- the CLI


def read_csv(path_or_text: Path | str) -> tuple[list[str], list[tuple]]:
    text = path_or_text.read_text(encoding="ascii") if isinstance(path_or_text, Path) else path_or_text
    header, *body = list(csv.reader(text.splitlines()))
    parsed = [(int(r[0]), *map(float, r[1:6]), int(r[6])) for r in body]
    return header, parsed


@pytest.mark.realdata
def test_cli_writes_every_bar_to_a_csv_that_reads_back_exactly(capture, tmp_path, capsys):
    path, out = capture / CAPTURE_FILES[0], tmp_path / "bars.csv"
    assert candles_main(["--input", str(path), "--timeframe", "1s", "--output", str(out)]) == 0
    header, parsed = read_csv(out)
    assert ",".join(header) == CSV_HEADER == "open_time_ms,open,high,low,close,volume,trades"
    assert parsed == rows(aggregate_file(path, "1s"))  # floats equal after the text round trip
    summary = capsys.readouterr().err
    assert "9757 trades of BTCUSDT" in summary and "rejected: none" in summary


@pytest.mark.realdata
def test_cli_output_dash_is_standard_output(capture, capsys):
    path = capture / CAPTURE_FILES[1]
    assert (
        candles_main(["--input", str(path), "--timeframe", "5m", "--output", "-", "--symbol", "btcusdt"]) == 0
    )
    out = capsys.readouterr().out
    assert read_csv(out)[1] == rows(aggregate_file(path, "5m"))


def test_write_csv_round_trips_awkward_floats(tmp_path):
    s = CandleSeries("1s")
    feed(s, [(T0, 0.1 + 0.2, 1e-8), (T0 + 1, 123456789.123456789, 3.0000000000000004)])
    write_csv(s, tmp_path / "x.csv")
    assert read_csv(tmp_path / "x.csv")[1] == rows(s)


def test_cli_refuses_an_unknown_timeframe(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        candles_main(["--input", str(tmp_path / "x"), "--timeframe", "2m"])
    assert exc.value.code == 2
    assert "invalid choice: '2m'" in capsys.readouterr().err


def test_cli_missing_input_is_one_line_on_stderr_and_exit_2(tmp_path):
    missing = tmp_path / "no-such-recording.gz"
    code = "from app.market.candles import candles_main; import sys; sys.exit(candles_main(sys.argv[1:]))"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--input",
            str(missing),
            "--timeframe",
            "1m",
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "No such file" in lines[0], done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.realdata
def test_rejected_frames_are_counted_and_skipped(capture, tmp_path, capsys):
    with gzip.open(capture / CAPTURE_FILES[0], "rb") as fh:
        lines = [next(fh) for _ in range(400)]
    lines[5:5] = [b"1 {not json\n", b"2 [1,2]\n", b'3 {"e":"mystery"}\n']
    recording = tmp_path / "mixed.txt"
    recording.write_bytes(b"".join(lines))
    trades = read_trades(recording)
    assert dict(trades.rejected) == {"malformed_json": 1, "not_an_object": 1, "unknown_event": 1}
    assert trades.frames == 403 and trades.symbol == "BTCUSDT"
    expected = sum(b'"e":"trade"' in line for line in lines)
    assert trades.ts_ms.size == expected > 0
    assert candles_main(["-i", str(recording), "-t", "1m", "-o", str(tmp_path / "o.csv")]) == 0
    assert "malformed_json 1" in capsys.readouterr().err


def test_cli_without_trades_says_so(tmp_path, capsys):
    recording = tmp_path / "quotes.txt"
    recording.write_text('1 {"u":1,"s":"BTCUSDT","b":"1.0","B":"1","a":"2.0","A":"1"}\n')
    assert candles_main(["--input", str(recording)]) == 1
    assert "no trades in" in capsys.readouterr().err
