"""Candle files from elsewhere: read whatever common layout they come in, refuse or count every bad row, and replay
them at the decision service's cadence (closed bars of the decision timeframe plus the bar forming so far)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from app.market.candle_files import (
    CandleFileError,
    candle_timeframe,
    load_candles,
    parse_time_ms,
    resample,
    states_at_cadence,
)
from app.market.features import FEATURE_NAMES
from tests.conftest import SHARED_DATA, require_data

MIN = 60_000
T0 = 1_577_836_800_000  # 2020-01-01 00:00 UTC


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _minute_rows(n: int, start: float = 100.0) -> np.ndarray:
    """n one-minute bars with distinct, hand-checkable values: bar i closes at start + i."""
    rows = []
    for i in range(n):
        c = start + i
        rows.append((T0 + i * MIN, c - 0.5, c + 1.0 + (i % 3), c - 1.0 - (i % 2), c, 10.0 + i))
    return np.array(rows, dtype=np.float64)


# ----- layouts ---------------------------------------------------------------------------------------------------


def test_the_same_bars_in_every_layout_read_the_same(tmp_path: Path) -> None:
    bars = [(T0, 1.0, 2.0, 0.5, 1.5, 3.0), (T0 + MIN, 1.5, 2.5, 1.0, 2.0, 4.0), (T0 + 2 * MIN, 2.0, 2.2, 1.9, 2.1, 0.0)]
    js = _write(tmp_path, "a.json", json.dumps([list(b) for b in bars]))
    # A banner line, a header with extra columns, newest first, epoch seconds.
    secs = "Exported by some site,https://example.invalid\nunix,symbol,open,high,low,close,Volume BTC,Volume USD\n" + \
        "".join(f"{int(t) // 1000},X,{o},{h},{lo},{c},{v},1\n" for t, o, h, lo, c, v in reversed(bars))
    # Dates, oldest first, a trailing blank line.
    dates = "datetime,open,high,low,close,volume\n" + "".join(
        f"2020-01-01 00:0{i}:00,{o},{h},{lo},{c},{v}\n" for i, (_, o, h, lo, c, v) in enumerate(bars)) + "\n"
    want = np.array(bars)
    for path in (js, _write(tmp_path, "b.csv", secs), _write(tmp_path, "c.csv", dates)):
        got = load_candles(path)
        assert not got.skipped, path.name
        np.testing.assert_array_equal(got.rows, want, err_msg=path.name)
    assert candle_timeframe(want) == "1m"


@pytest.mark.parametrize("text", ["1577836800", "1577836800000", "1577836800000000", "2020-01-01 00:00:00",
                                  "2020-01-01 12-AM", "2020-01-01T00:00:00Z", "2020-01-01T01:00:00+01:00",
                                  "2020-01-01 00:00"])
def test_times_in_seconds_milliseconds_microseconds_and_dates_are_the_same_instant(text: str) -> None:
    assert parse_time_ms(text) == T0


# ----- hostile rows ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ("2020-01-01 00:01:00,1,2,0.5,oops,1\n", 3, "oops"),  # a number that is none
        ("2020-01-01 00:01:00,1,2,0.5,1.5\n", 3, "5 fields"),  # a field missing
        ("yesterday,1,2,0.5,1.5,1\n", 3, "yesterday"),  # a time that is none
    ],
)
def test_an_unreadable_row_is_an_error_naming_the_file_and_line(tmp_path: Path, body: str, line: int,
                                                                 what: str) -> None:
    path = _write(tmp_path, "bad.csv", "date,open,high,low,close,volume\n2020-01-01 00:00:00,1,2,0.5,1.5,1\n" + body)
    with pytest.raises(CandleFileError, match=rf"bad\.csv line {line}: .*{what}"):
        load_candles(path)


def test_a_file_without_the_columns_says_which_it_needs(tmp_path: Path) -> None:
    with pytest.raises(CandleFileError, match="no header line naming open and close"):
        load_candles(_write(tmp_path, "x.csv", "a,b,c\n1,2,3\n"))
    with pytest.raises(CandleFileError, match=r"line 1: the header needs a time column"):
        load_candles(_write(tmp_path, "y.csv", "open,high,low,close,volume\n1,2,0.5,1.5,1\n"))
    with pytest.raises(CandleFileError, match=r"z\.json row 2: expected"):
        load_candles(_write(tmp_path, "z.json", json.dumps([[T0, 1, 2, 0.5, 1.5, 1], [T0 + MIN, 1, 2]])))
    with pytest.raises(CandleFileError, match=r"w\.json: expected a JSON array"):
        load_candles(_write(tmp_path, "w.json", json.dumps({"candles": []})))
    with pytest.raises(CandleFileError, match=r"v\.json row 1: True is not a number"):
        load_candles(_write(tmp_path, "v.json", json.dumps([[T0, True, 2, 0.5, 1.5, 1]])))


def test_rows_that_are_no_bar_are_skipped_and_counted_with_their_lines(tmp_path: Path) -> None:
    lines = ["date,open,high,low,close,volume"]
    good = [f"2020-01-01 00:{m:02d}:00,100,101,99,100.5,2" for m in range(6)]
    lines += good[:2]
    lines.append("2020-01-01 00:02:00,100,99,101,100,2")  # line 4: high below low
    lines.append("2020-01-01 00:03:00,nan,101,99,100,2")  # line 5: NaN price
    lines.append("2020-01-01 00:04:00,0,101,99,100,2")  # line 6: zero price
    lines.append("2020-01-01 00:05:00,100,101,99,100,-1")  # line 7: negative volume
    lines.append("2020-01-01 00:06:00,100,101,99,102,2")  # line 8: close above the high
    lines.append("2020-01-01 00:01:00,50,51,49,50,2")  # line 9: the 00:01 bar again
    lines.append("2020-01-01 00:07:30,100,101,99,100,2")  # line 10: half a minute off the grid
    lines += good[2:]
    got = load_candles(_write(tmp_path, "f.csv", "\n".join(lines) + "\n"))
    assert dict(got.skipped) == {
        "high below low": 1,
        "price not finite or not positive": 2,
        "volume negative or not finite": 1,
        "open or close outside [low, high]": 1,
        "repeated open time (the first in the file kept)": 1,
        "open time not a multiple of the 60 s bar": 1,
    }
    assert got.examples["price not finite or not positive"] == [5, 6]
    assert got.examples["repeated open time (the first in the file kept)"] == [9]
    report = got.skip_report()
    assert "2 price not finite or not positive (line 5, 6)" in report and "1 high below low (line 4)" in report
    np.testing.assert_array_equal(got.rows[:, 0], [T0 + m * MIN for m in range(6)])
    assert (got.rows[:, 4] == 100.5).all()  # the repeated 00:01 bar (close 50) lost to the first one


def test_a_file_with_no_usable_bar_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CandleFileError, match="no usable bars"):
        load_candles(_write(tmp_path, "e.csv", "date,open,high,low,close,volume\n2020-01-01 00:00:00,0,0,0,0,0\n"))


# ----- resampling at the cadence -----------------------------------------------------------------------------------


def test_resampling_by_hand() -> None:
    rows = _minute_rows(12)
    bars = resample(rows, "5m")
    np.testing.assert_array_equal(bars[:, 0], [T0, T0 + 5 * MIN, T0 + 10 * MIN])
    first = rows[:5]
    np.testing.assert_allclose(bars[0, 1:], [first[0, 1], first[:, 2].max(), first[:, 3].min(), first[-1, 4],
                                             first[:, 5].sum()])
    np.testing.assert_allclose(bars[2, 1:], [rows[10, 1], rows[10:, 2].max(), rows[10:, 3].min(), 111.0,
                                             rows[10:, 5].sum()])  # the last bar holds only two minutes


def test_a_state_inside_a_bar_is_the_closed_bars_plus_the_live_price() -> None:
    rows = _minute_rows(15)
    states = {s.exchange_ms: s for s in states_at_cadence(rows, symbol="X", timeframe="5m", every_ms=MIN)}
    t = T0 + 12 * MIN  # closed: [0, 5) and [5, 10); forming: the minutes 10 and 11
    s = states[t]
    assert s.bar_close_ms == T0 + 10 * MIN
    assert s.last_price == 111.0  # the close of minute 11, the last one before t
    assert s.ret_1 == pytest.approx((109.0 / 104.0 - 1) * 100)  # closes of the two closed bars
    assert s.move_pct == pytest.approx((111.0 / 109.0 - 1) * 100)
    closed = resample(rows[:10], "5m")
    typical = (closed[:, 2] + closed[:, 3] + closed[:, 4]) / 3
    assert s.vwap == pytest.approx(float(typical @ closed[:, 5] / closed[:, 5].sum()))
    # Within the bar only the live features move; on the close nothing is forming (move 0).
    inside = [states[T0 + m * MIN] for m in (11, 12, 13, 14)]
    for a, b in itertools.pairwise(inside):
        for name in FEATURE_NAMES:
            if name not in ("vwap_dist_pct", "move_pct", "spread_bps"):
                assert getattr(a, name) == getattr(b, name), name
    assert states[T0 + 10 * MIN].move_pct == 0.0
    assert min(states) == T0 + 10 * MIN  # two closed bars are needed
    assert max(states) == T0 + 15 * MIN  # up to the last file bar's close


def test_a_gap_in_the_file_is_flat_bars_and_the_cadence_goes_on() -> None:
    rows = np.delete(_minute_rows(30), np.s_[12:20], axis=0)  # eight minutes without a trade
    states = list(states_at_cadence(rows, symbol="X", timeframe="5m", every_ms=MIN))
    times = [s.exchange_ms for s in states]
    assert times == list(range(T0 + 10 * MIN, T0 + 31 * MIN, MIN))
    at = {s.exchange_ms: s for s in states}[T0 + 20 * MIN]  # 12 -> 19 missing: bar [15, 20) is flat at 111
    assert at.last_price == 111.0 and at.ret_1 == 0.0


@pytest.mark.parametrize(("timeframe", "every_ms"), [("1s", MIN), ("5m", 90_000), ("5m", 0)])
def test_a_timeframe_or_cadence_finer_than_the_file_is_refused(timeframe: str, every_ms: int) -> None:
    with pytest.raises(ValueError, match="must be multiples of it"):
        next(states_at_cadence(_minute_rows(30), symbol="X", timeframe=timeframe, every_ms=every_ms))


def test_start_and_end_pick_the_asks_and_the_history_stays() -> None:
    rows = _minute_rows(40)
    whole = {s.exchange_ms: s for s in states_at_cadence(rows, symbol="X", timeframe="5m", every_ms=MIN)}
    part = list(states_at_cadence(rows, symbol="X", timeframe="5m", every_ms=MIN, start_ms=T0 + 22 * MIN,
                                  end_ms=T0 + 30 * MIN))
    assert [s.exchange_ms for s in part] == list(range(T0 + 22 * MIN, T0 + 30 * MIN, MIN))
    assert all(s == whole[s.exchange_ms] for s in part)


def test_the_real_ten_days_at_the_scaled_cadence() -> None:
    candles = load_candles(require_data(SHARED_DATA / "freqtrade-1m" / "UNITTEST_BTC-1m.json"))
    assert not candles.skipped
    states = list(states_at_cadence(candles.rows, symbol="X", timeframe="1h", every_ms=5 * MIN))
    assert len(states) > 2500  # ten days every five minutes
    assert all(b.exchange_ms - a.exchange_ms == 5 * MIN for a, b in itertools.pairwise(states))
    assert all(s.bar_close_ms <= s.exchange_ms < s.bar_close_ms + 3_600_000 for s in states)  # never in the future
    assert all(math.isfinite(v) for s in states[::97] for v in s.features())
    on_close = [s for s in states if s.exchange_ms == s.bar_close_ms]
    assert len(on_close) > 200 and all(s.move_pct == 0.0 for s in on_close)
