"""Exchange-time plausibility: the wall clock for a live feed, the stream's own times for a replay."""

from __future__ import annotations

import gzip
import itertools

from app.market.adapters import binance
from app.market.exchange_time import DAY_MS, MINUTE_MS, ExchangeTimeWindow
from app.models import Quote, Side, Trade

NOW = 1_786_309_500_000  # a fixed "local clock" for these tests
HOUR = 60 * MINUTE_MS


def trade(ms: int, tid: int = 1) -> Trade:
    return Trade("BTCUSDT", 61000.0, 0.1, Side.BUY, tid, ms, 0)


def quote(ms: int) -> Quote:
    return Quote("BTCUSDT", 1.0, 1.0, 2.0, 1.0, 1, ms, 0)


def window(reference: str) -> ExchangeTimeWindow:
    return ExchangeTimeWindow(reference, now_ms=lambda: NOW)  # type: ignore[arg-type]


def test_live_feed_times_must_be_near_the_local_clock():
    w = window("wall")
    assert w.reject_reason([trade(NOW)]) is None
    assert w.reject_reason([trade(NOW + 2 * MINUTE_MS)]) is None  # clock skew
    assert w.reject_reason([trade(NOW - 3 * DAY_MS)]) is None  # a reconnect snapshot of a quiet market
    assert w.reject_reason([quote(0)]) is None  # no time sent (Binance bookTicker): nothing to judge
    assert w.reject_reason([trade(4_102_444_800_000)]) == "time_ahead_of_clock"  # 2100
    assert w.reject_reason([trade(20_000_000_000_000)]) == "time_ahead_of_clock"  # 2e13 ms
    assert w.reject_reason([trade(NOW + HOUR)]) == "time_ahead_of_clock"
    assert w.reject_reason([trade(1)]) == "time_behind_clock"
    assert w.reject_reason([trade(NOW - 30 * DAY_MS)]) == "time_behind_clock"
    # one bad trade among good ones condemns the frame
    assert w.reject_reason([trade(NOW), trade(NOW + HOUR), trade(NOW)]) == "time_ahead_of_clock"


def test_a_replay_is_judged_on_its_own_times():
    w = window("stream")
    two_years_ago = NOW - 730 * DAY_MS
    assert w.reject_reason([trade(two_years_ago)]) is None  # anchors the stream
    assert w.reject_reason([trade(two_years_ago + 1000)]) is None
    # a single outlier a day ahead of the stream (still in the wall clock's past) is refused, and the stream goes on
    assert w.reject_reason([trade(two_years_ago + DAY_MS)]) == "time_off_stream"
    assert w.reject_reason([trade(two_years_ago + 2000)]) is None
    assert w.reject_reason([trade(1)]) == "time_off_stream"
    assert w.reject_reason([trade(two_years_ago + 3000)]) is None
    # nothing is from the local clock's future, replay or not
    assert w.reject_reason([trade(4_102_444_800_000)]) == "time_ahead_of_clock"
    assert w.reject_reason([trade(two_years_ago + 4000)]) is None


def test_a_seam_in_a_recording_costs_one_frame_not_the_rest():
    w = window("stream")
    start = NOW - 400 * DAY_MS
    assert w.reject_reason([trade(start)]) is None
    later = start + 3 * HOUR  # the recorder reconnected three hours later
    assert w.reject_reason([trade(later)]) == "time_off_stream"
    assert w.reject_reason([trade(later + 50)]) is None  # two frames agree: the stream moved
    assert w.reject_reason([trade(later + 100)]) is None
    assert w.reanchors == 1


def test_a_far_future_first_frame_cannot_anchor_a_replay():
    w = window("stream")
    assert w.reject_reason([trade(4_102_444_800_000)]) == "time_ahead_of_clock"
    assert w.reject_reason([trade(NOW - DAY_MS)]) is None


def test_the_real_capture_passes_as_a_replay_and_would_fail_as_live(binance_capture):
    replay, live = ExchangeTimeWindow("stream"), ExchangeTimeWindow("wall")
    judged = replay_rejected = live_rejected = 0
    with gzip.open(binance_capture, "rb") as f:
        for line in itertools.islice(f, 30_000):
            _, raw = line.split(b" ", 1)
            events = binance.parse(raw, 0)
            if not any(e.exchange_ms for e in events):
                continue  # bookTicker frames carry no time
            judged += 1
            replay_rejected += replay.reject_reason(events) is not None
            live_rejected += live.reject_reason(events) is not None
    assert judged > 5_000
    assert replay_rejected == 0
    assert replay.reanchors == 0
    assert live_rejected == judged  # why a replay must not be judged on the wall clock (2024 frames)


def test_one_implausible_time_costs_its_event_not_the_frame():
    w = window("wall")
    kept, rejected = w.screen([trade(NOW, 1), trade(NOW + HOUR, 2), trade(NOW - 30 * DAY_MS, 3), trade(NOW, 4)])
    assert [t.trade_id for t in kept] == [1, 4]
    assert rejected == {"time_ahead_of_clock": 1, "time_behind_clock": 1}
    frame = [trade(NOW, 5), quote(0), trade(NOW + 1000, 6)]
    assert w.screen(frame) == (frame, None)  # all good: the frame itself, untouched

    s = window("stream")
    assert s.screen([trade(NOW - HOUR, 1), trade(NOW - HOUR + 10, 2)])[1] is None  # anchors the replay
    kept, rejected = s.screen([trade(NOW - HOUR + 20, 3), trade(NOW - 40 * DAY_MS, 4), trade(NOW - HOUR + 30, 5)])
    assert [t.trade_id for t in kept] == [3, 5] and rejected == {"time_off_stream": 1}
