"""The Binance adapter on real frames read from the captures at test time, checked field by field against the
raw JSON, and on bad input, where each kind of fault has its own countable reason."""

from __future__ import annotations

import gzip
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.market.adapters import ParseError, binance
from app.market.recording import iter_frames
from app.models import BookUpdate, Candle, Quote, Side, Trade

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CAPTURE_FILES = tuple(
    DATA / "binance-spot-btcusdt-capture" / n for n in ("btcusdt_20240808.gz", "btcusdt_20240809.gz")
)
CRYPTOFEED = DATA / "cryptofeed-captures" / "BINANCE.ws.1.0"

pytestmark = pytest.mark.realdata


def need(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(
            f"recorded exchange data not found: {', '.join(missing)} (../shared/data beside the project)"
        )


def raw_lines(path: Path) -> list[tuple[int, bytes]]:
    """``(receive_ns, payload)`` per line, split here by hand rather than by the recording reader."""
    out = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\n")
            if path == CRYPTOFEED:
                head, sep, payload = line.partition(b": ")
                if not sep or not payload.startswith(b"{"):
                    continue  # the connect URL on the first line, the empty last line
                out.append((int(float(head) * 1e9), payload))
            else:
                head, _, payload = line.partition(b" ")
                out.append((int(head), payload))
    return out


def payload(raw: bytes) -> dict[str, Any]:
    msg = json.loads(raw)
    return msg.get("data", msg)


def first(path: Path, pred) -> tuple[int, bytes, dict[str, Any]]:
    for recv_ns, raw in raw_lines(path):
        d = payload(raw)
        if pred(d):
            return recv_ns, raw, d
    raise AssertionError(f"no such frame in {path}")


def kind_of(d: dict[str, Any]) -> str:
    """The event type as Binance's documentation defines it, from the raw JSON."""
    if "e" in d:
        return d["e"]
    if "lastUpdateId" in d:
        return "snapshot"
    return "bookTicker"


@pytest.fixture(scope="module")
def capture() -> Path:
    need(*CAPTURE_FILES)
    return CAPTURE_FILES[0]


@pytest.fixture(scope="module")
def cryptofeed() -> Path:
    need(CRYPTOFEED)
    return CRYPTOFEED


# ----------------------------------------------------------------------------------------- real frames


@pytest.mark.parametrize("maker", [True, False], ids=["buyer_maker_is_sell", "buyer_taker_is_buy"])
def test_trade_fields_equal_the_raw_json(capture, maker):
    recv_ns, raw, d = first(capture, lambda d: d.get("e") == "trade" and d["m"] is maker)
    [trade] = binance.parse(raw, recv_ns)
    assert trade == Trade(
        symbol="BTCUSDT",
        price=float(d["p"]),
        qty=float(d["q"]),
        side=Side.SELL if maker else Side.BUY,
        trade_id=d["t"],
        exchange_ms=d["T"],
        recv_ns=recv_ns,
    )
    assert d["T"] != d["E"]  # the trade time is T, not the event time


def test_the_first_trade_of_the_capture_by_value(capture):
    recv_ns, raw, _ = first(capture, lambda d: d.get("e") == "trade")
    [trade] = binance.parse(raw, recv_ns)
    assert (trade.price, trade.qty, trade.side, trade.trade_id, trade.exchange_ms, trade.recv_ns) == (
        61837.63,
        0.02,
        Side.SELL,
        3735683259,
        1723161255342,
        1723161254087896568,
    )


def test_a_raw_stream_payload_without_the_envelope_parses_the_same(capture):
    recv_ns, raw, d = first(capture, lambda d: d.get("e") == "trade")
    assert binance.parse(orjson.dumps(d), recv_ns) == binance.parse(raw, recv_ns)


def test_book_ticker_bid_and_ask(capture):
    recv_ns, raw, d = first(capture, lambda d: kind_of(d) == "bookTicker")
    [quote] = binance.parse(raw, recv_ns)
    assert isinstance(quote, Quote)
    assert (quote.bid, quote.bid_qty, quote.ask, quote.ask_qty) == tuple(float(d[k]) for k in "bBaA")
    assert (quote.symbol, quote.update_id, quote.exchange_ms) == ("BTCUSDT", d["u"], 0)
    assert quote.bid < quote.ask


def test_depth_update_ids_and_levels(capture):
    recv_ns, raw, d = first(capture, lambda d: d.get("e") == "depthUpdate" and d["b"] and d["a"])
    [book] = binance.parse(raw, recv_ns)
    assert isinstance(book, BookUpdate) and not book.is_snapshot
    assert (book.first_id, book.last_id, book.exchange_ms) == (d["U"], d["u"], d["E"])
    assert (len(book.bids), len(book.asks)) == (len(d["b"]), len(d["a"]))
    assert book.bids[0] == (float(d["b"][0][0]), float(d["b"][0][1]))
    assert book.asks[-1] == (float(d["a"][-1][0]), float(d["a"][-1][1]))


def test_depth_update_ids_are_contiguous_across_the_capture(capture):
    books = [
        ev
        for recv_ns, raw in iter_frames(capture)
        for ev in binance.parse(raw, recv_ns or 0)
        if isinstance(ev, BookUpdate) and not ev.is_snapshot
    ]
    assert len(books) == 3451
    assert all(b.first_id == a.last_id + 1 for a, b in itertools.pairwise(books))


def test_the_inline_rest_snapshot(capture):
    recv_ns, raw, d = first(capture, lambda d: "lastUpdateId" in d)
    [snap] = binance.parse(raw, recv_ns)
    assert isinstance(snap, BookUpdate) and snap.is_snapshot
    assert snap.first_id == snap.last_id == d["lastUpdateId"] == 50093239218
    assert (len(snap.bids), len(snap.asks)) == (len(d["bids"]), len(d["asks"]))
    assert snap.bids[0] == (float(d["bids"][0][0]), float(d["bids"][0][1]))
    assert snap.bids[0][0] > snap.bids[-1][0] and snap.asks[0][0] < snap.asks[-1][0]


def test_kline_fields_and_closed_flag(cryptofeed):
    recv_ns, raw, d = first(cryptofeed, lambda d: d.get("e") == "kline")
    [candle] = binance.parse(raw, recv_ns)
    k = d["k"]
    assert candle == Candle(
        symbol=k["s"],
        timeframe=k["i"],
        open_ms=k["t"],
        open=float(k["o"]),
        high=float(k["h"]),
        low=float(k["l"]),
        close=float(k["c"]),
        volume=float(k["v"]),
        trades=k["n"],
        closed=k["x"],
        exchange_ms=d["E"],
        recv_ns=recv_ns,
    )
    assert candle.timeframe == "1m" and candle.closed is False
    closed = dict(d, k=dict(k, x=True))
    assert binance.parse(orjson.dumps({"stream": "s", "data": closed}), 0)[0].closed is True


def test_agg_trade_id_is_the_aggregate_id(cryptofeed):
    recv_ns, raw, d = first(cryptofeed, lambda d: d.get("e") == "aggTrade")
    [trade] = binance.parse(raw, recv_ns)
    assert (trade.trade_id, trade.price, trade.qty, trade.exchange_ms) == (
        d["a"],
        float(d["p"]),
        float(d["q"]),
        d["T"],
    )
    assert trade.side is (Side.SELL if d["m"] else Side.BUY)
    assert d["f"] != d["a"]  # the first underlying trade id is not the id we keep


@pytest.mark.parametrize("which", ["btcusdt_capture", "cryptofeed"])
def test_every_frame_parses_and_the_counts_match_the_raw_json(which):
    paths = CAPTURE_FILES if which == "btcusdt_capture" else (CRYPTOFEED,)
    trade_kind = "trade" if which == "btcusdt_capture" else "aggTrade"  # what each file subscribed to
    need(*paths)
    expected: Counter[str] = Counter()
    got: Counter[str] = Counter()
    for path in paths:
        expected.update(kind_of(payload(raw)) for _, raw in raw_lines(path))
        for recv_ns, raw in iter_frames(path):
            for ev in binance.parse(raw, recv_ns or 0):
                got[trade_kind if isinstance(ev, Trade) else event_kind(ev)] += 1
    assert got == expected
    if which == "btcusdt_capture":
        assert expected == {"bookTicker": 73174, "trade": 19904, "depthUpdate": 6495, "snapshot": 1}
    else:
        assert expected == {"depthUpdate": 177, "bookTicker": 84, "aggTrade": 2, "kline": 2}


def event_kind(ev: object) -> str:
    if isinstance(ev, BookUpdate):
        return "snapshot" if ev.is_snapshot else "depthUpdate"
    return {Quote: "bookTicker", Candle: "kline"}[type(ev)]


# ------------------------------------------------------------------------------------------ bad input

TRADE = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 5, "p": "100.5", "q": "1", "T": 1, "m": True}


def frame(**changes: Any) -> bytes:
    return orjson.dumps({"stream": "btcusdt@trade", "data": {**TRADE, **changes}})


BAD_FRAMES = {
    "truncated": (frame()[:40], "malformed_json"),
    "price_is_a_list": (frame(p=[1]), "bad_field"),
    "maker_flag_is_a_string": (frame(m="true"), "bad_field"),
    "unknown_event": (b'{"stream":"x","data":{"e":"somethingNew","E":1}}', "unknown_event"),
    "json_array": (b"[1,2,3]", "not_an_object"),
    "not_utf8": (b'{"e":"trade","s":"\xff\xfe"}', "not_utf8"),
    "negative_price": (frame(p="-1.5"), "bad_value"),
    "nan_price": (frame(p="NaN"), "bad_value"),
    "error_reply": (b'{"error":{"code":2,"msg":"Invalid request: unknown stream"},"id":1}', "request_error"),
    "data_not_an_object": (b'{"stream":"x","data":[1]}', "bad_envelope"),
}


@pytest.mark.parametrize("name", BAD_FRAMES)
def test_bad_input_raises_parse_error_with_its_reason(name):
    raw, reason = BAD_FRAMES[name]
    with pytest.raises(ParseError) as exc:
        binance.parse(raw, 0)
    assert exc.value.reason == reason
    assert str(exc.value).startswith(reason)


def test_each_kind_of_fault_has_its_own_reason():
    reasons = {reason for _, reason in BAD_FRAMES.values()}
    # wrong types share one reason, bad values another; the rest are one reason each
    assert len(reasons) == len(BAD_FRAMES) - 2


def test_a_kline_closed_flag_that_is_not_a_boolean_is_refused():
    k = {"t": 60_000, "s": "X", "i": "1m", "o": "1", "h": "1", "l": "1", "c": "1", "v": "1", "n": 1, "x": "false"}
    with pytest.raises(ParseError) as exc:
        binance.parse(orjson.dumps({"e": "kline", "E": 1, "k": k}), 0)
    assert exc.value.reason == "bad_field"


def test_a_subscribe_reply_is_no_event():
    assert binance.parse(b'{"result":null,"id":1}', 0) == []
    assert binance.parse('{"result":null,"id":7}', 0) == []
