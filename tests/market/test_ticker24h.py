"""24 h statistics: the built-in exchange serves Binance's /ticker/24hr from its own market, the poller reads it over
loopback, and an answer that is hostile or absurd is refused at the boundary and counted, never shown."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from app.market.exchanges import plan
from app.market.sim.markets import MultiMarket
from app.market.sim.server import ExchangeSimulator
from app.market.ticker24h import (
    Ticker24hError,
    Ticker24hPoller,
    Ticker24hSource,
    parse_binance_answer,
    parse_coinbase_product,
    source_for,
)
from tests.conftest import wait_until

SYMBOLS = ["BTCUSDT", "XRPUSDT"]


def client_factory():
    client = httpx.AsyncClient(timeout=5.0)

    async def get() -> httpx.AsyncClient:
        return client

    return client, get


def good_entry(symbol: str = "BTCUSDT", last: str = "61000.00", open_: str = "60000.00") -> dict:
    high, low = max(float(last), float(open_)) * 1.01, min(float(last), float(open_)) * 0.99
    return {"symbol": symbol, "lastPrice": last, "openPrice": open_, "highPrice": f"{high:.8f}",
            "lowPrice": f"{low:.8f}",
            "priceChangePercent": f"{(float(last) - float(open_)) / float(open_) * 100:.3f}",
            "quoteVolume": "123456789.12", "volume": "2000.5", "closeTime": 1_700_000_000_000}


# ----- the built-in exchange on loopback --------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["binance", "binance-futures"])
async def test_the_built_in_exchange_serves_24h_statistics_the_poller_reads(protocol):
    async with ExchangeSimulator(MultiMarket.for_symbols(SYMBOLS, 20.0), protocol=protocol) as sim:
        exchange = "binance-futures" if protocol == "binance-futures" else "binance"
        feed = plan(exchange, SYMBOLS, ws_url=sim.ws_url, rest_url=sim.rest_url, simulated=True)
        source = source_for(exchange, feed, simulated=True)
        assert isinstance(source, Ticker24hSource)
        client, get = client_factory()
        try:
            poller = Ticker24hPoller(get, source, SYMBOLS)
            await poller.poll_once()
            # What the exchange's own 24 h klines say: the first open and the last close of a day of 5 min bars.
            bars = (await client.get(f"{sim.rest_url}/api/v3/klines",
                                     params={"symbol": "XRPUSDT", "interval": "5m", "limit": 289})).json()
        finally:
            await client.aclose()
    assert poller.failures == 0 and poller.refused == 0, poller.last_error
    assert set(poller.stats) == set(SYMBOLS)
    xrp = poller.get("XRPUSDT")
    assert xrp is not None
    assert xrp.open == pytest.approx(float(bars[0][1]))
    assert xrp.low <= xrp.last <= xrp.high and xrp.low <= xrp.open <= xrp.high
    assert xrp.change_pct == pytest.approx((xrp.last - xrp.open) / xrp.open * 100, abs=1e-3)
    assert 0.3 < xrp.last < 1.2, "the synthetic XRP market starts near 0.6"
    assert xrp.quote_volume > 0
    assert poller.why_missing("XRPUSDT") == ""


@pytest.mark.asyncio
async def test_the_built_in_exchange_refuses_an_unknown_symbol_as_binance_does():
    async with ExchangeSimulator(MultiMarket.for_symbols(SYMBOLS, 20.0)) as sim, httpx.AsyncClient() as client:
        resp = await client.get(f"{sim.rest_url}/api/v3/ticker/24hr", params={"symbol": "NOPEUSDT"})
        every = await client.get(f"{sim.rest_url}/api/v3/ticker/24hr")
    assert resp.status_code == 400 and resp.json()["code"] == -1121
    assert [e["symbol"] for e in every.json()] == SYMBOLS


# ----- hostile answers --------------------------------------------------------------------------------------------
class CannedExchange:
    """A real HTTP server on loopback that answers every request with the body it is given."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b"[]"
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CannedExchange:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline() not in (b"\r\n", b""):
            pass
        self.requests += 1
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close"
                     b"\r\n\r\n%s" % (self.status, len(self.body), self.body))
        await writer.drain()
        writer.close()


@pytest.mark.asyncio
async def test_absurd_values_are_refused_counted_and_never_shown():
    async with CannedExchange() as exchange:
        client, get = client_factory()
        poller = Ticker24hPoller(get, Ticker24hSource("binance", exchange.url), SYMBOLS)
        try:
            exchange.body = json.dumps([good_entry("BTCUSDT"), good_entry("XRPUSDT", "0.6100", "0.6000")]).encode()
            await poller.poll_once()
            assert poller.get("XRPUSDT") is not None and poller.refused == 0

            bad_xrp = good_entry("XRPUSDT", "1e400", "0.6000")  # infinite once parsed
            exchange.body = json.dumps([good_entry("BTCUSDT", "62000.00"), bad_xrp,
                                        good_entry("EVILUSDT")]).encode()
            await poller.poll_once()
        finally:
            await client.aclose()
    assert poller.refused == 2, "the infinite price and the symbol nobody asked for"
    assert poller.get("XRPUSDT") is None, "a refused value is not shown, nor the previous one as if it were current"
    assert "XRPUSDT" in poller.why_missing("XRPUSDT") or "lastPrice" in poller.why_missing("XRPUSDT")
    assert poller.get("BTCUSDT") is not None and poller.get("BTCUSDT").last == 62000.0
    assert "EVILUSDT" not in poller.stats


@pytest.mark.asyncio
async def test_a_huge_json_integer_is_refused_and_counted_and_the_poller_lives_on():
    """A 400-digit integer (valid JSON, no quotes) overflows a float: that entry is refused and counted, the others
    are shown, and poll_once returns (an escaping OverflowError ended the poller's task: a FAULT)."""
    huge = "1" + "0" * 400
    async with CannedExchange() as exchange:
        client, get = client_factory()
        poller = Ticker24hPoller(get, Ticker24hSource("binance", exchange.url), SYMBOLS, interval_s=0.01)
        try:
            body = json.dumps([good_entry("BTCUSDT"), good_entry("XRPUSDT", "0.6100", "0.6000")])
            exchange.body = body.replace('"0.6100"', huge).encode()
            await poller.poll_once()
            task = asyncio.create_task(poller.run())
            await wait_until(lambda: poller.polls >= 3 or task.done(), timeout=10, what="three polls")
            assert not task.done(), "the poller's task ended"
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await client.aclose()
    assert poller.get("BTCUSDT") is not None and poller.get("XRPUSDT") is None
    assert poller.refused >= 1 and poller.failures == 0
    assert "lastPrice" in poller.why_missing("XRPUSDT")


@pytest.mark.parametrize("value", [10 ** 400, -(10 ** 400)], ids=["plus", "minus"])
def test_a_huge_integer_in_any_field_is_refused_with_a_reason(value):
    for field in ("lastPrice", "openPrice", "highPrice", "lowPrice", "quoteVolume", "priceChangePercent"):
        entry = good_entry()
        entry[field] = value
        found, problems = parse_binance_answer([entry], ["BTCUSDT"], received_ms=1)
        assert found == {} and field in problems["BTCUSDT"], (field, problems)
    with pytest.raises(Ticker24hError):
        parse_coinbase_product({"price": "61000.5", "price_percentage_change_24h": value}, "BTCUSD", received_ms=1)


@pytest.mark.asyncio
async def test_a_failing_exchange_is_counted_and_logged_and_the_poller_goes_on(caplog):
    async with CannedExchange() as exchange:
        client, get = client_factory()
        poller = Ticker24hPoller(get, Ticker24hSource("binance", exchange.url), SYMBOLS, interval_s=0.01)
        try:
            exchange.status, exchange.body = 500, b'{"code":-1000}'
            await poller.poll_once()
            exchange.status, exchange.body = 200, b'{"not": "a list"}'
            await poller.poll_once()
            exchange.body = b"not json at all"
            await poller.poll_once()
            # run() never ends on a failure: it keeps polling at its interval
            exchange.status, exchange.body = 500, b"{}"
            task = asyncio.create_task(poller.run())
            await wait_until(lambda: exchange.requests >= 6 or task.done(), timeout=10, what="six polls")
            assert not task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await client.aclose()
    assert poller.failures >= 6
    assert poller.stats == {}
    assert "HTTP 500" in poller.why_missing("BTCUSDT")
    assert any("24 h statistics" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("field, value", [
    ("lastPrice", "-5"), ("lastPrice", "nan"), ("openPrice", "0"), ("highPrice", "1"),  # high under low
    ("lowPrice", "abc"), ("quoteVolume", "-1"), ("priceChangePercent", "55.0"),  # disagrees with open and last
    ("symbol", 7), ("lastPrice", True), ("lastPrice", "1e13"),
])
def test_each_absurd_field_is_refused_with_a_reason(field, value):
    entry = good_entry()
    entry[field] = value
    found, problems = parse_binance_answer([entry], ["BTCUSDT"], received_ms=1)
    assert found == {}
    assert problems and all(isinstance(v, str) and v for v in problems.values())


def test_a_good_answer_parses_to_finite_numbers():
    found, problems = parse_binance_answer([good_entry()], ["BTCUSDT"], received_ms=5)
    assert problems == {}
    t = found["BTCUSDT"]
    assert t.change_pct == pytest.approx(1000 / 60000 * 100)
    assert all(math.isfinite(x) for x in (t.last, t.open, t.high, t.low, t.quote_volume))
    assert t.received_ms == 5


def test_coinbase_product_gives_its_24h_change_and_kraken_says_why_not():
    t = parse_coinbase_product({"product_id": "BTC-USD", "price": "61000.5", "price_percentage_change_24h": "1.5",
                                "volume_24h": "1000"}, "BTCUSD", received_ms=1)
    assert t.last == 61000.5 and t.change_pct == 1.5
    assert t.open == pytest.approx(61000.5 / 1.015)
    with pytest.raises(Ticker24hError):
        parse_coinbase_product({"price": "61000.5", "price_percentage_change_24h": "inf"}, "BTCUSD", received_ms=1)
    with pytest.raises(Ticker24hError):
        parse_coinbase_product({"price": "61000.5", "price_percentage_change_24h": "-100"}, "BTCUSD", received_ms=1)
    kraken = source_for("kraken", plan("kraken", ["BTCUSD"]), simulated=False)
    assert isinstance(kraken, str) and "Kraken" in kraken
    coinbase = source_for("coinbase", plan("coinbase", ["BTCUSD"]), simulated=False)
    assert isinstance(coinbase, Ticker24hSource) and coinbase.api == "coinbase"


@pytest.mark.asyncio
async def test_the_session_polls_the_built_in_exchange_and_the_watchlist_shows_the_24h_change(tmp_path):
    import time

    from app.config import Settings
    from app.session import Session
    from app.view.watchlist import PriceMemory, watchlist
    from tests.conftest import wait_until

    s = Settings(symbols=["XRPUSDT"], sim_process=False, sim_trades_per_s=50.0, history_bars=0,
                 journal_path=tmp_path / "journal.sqlite3", decision_source="rules")
    session = Session(s)
    assert session.ticker24h.get("XRPUSDT") is None and session.ticker24h.why_missing("XRPUSDT")
    try:
        await session.start()
        assert "24 h statistics" in {t.get_name() for t in session.supervisor.tasks}
        await wait_until(lambda: session.ticker24h.get("XRPUSDT") is not None, timeout=15, what="24 h statistics")
        await wait_until(lambda: session.market["XRPUSDT"].last_trade is not None, timeout=15, what="a trade")
        row = watchlist(session.market, session.instruments, memory=PriceMemory(), stats24h=session.ticker24h,
                        now_ns=time.perf_counter_ns()).row("XRPUSDT")
    finally:
        await session.stop()
    assert row.change_24h.endswith(" %") and row.change_24h_pct is not None
    assert session.task_faults == 0


@pytest.mark.asyncio
async def test_the_session_makes_one_rest_client_however_many_parts_ask_for_it_at_once(tmp_path, monkeypatch):
    """Instruments, history, depth and the 24 h poller all ask for the client at start: one is built (and closed at
    stop), not one each with all but the last left open."""
    from app.config import Settings
    from app.market import history
    from app.session import Session

    made: list[httpx.AsyncClient] = []
    real = history.make_client
    monkeypatch.setattr(history, "make_client", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    s = Settings(symbols=["XRPUSDT"], sim_process=False, history_bars=0, journal_path=tmp_path / "j.sqlite3",
                 decision_source="rules")
    session = Session(s)
    clients = await asyncio.gather(*(session._http_client() for _ in range(4)))
    await session.stop()
    assert len(made) == 1 and all(c is made[0] for c in clients)
    assert made[0].is_closed


@pytest.mark.asyncio
async def test_a_failed_rest_client_build_is_retried_by_the_next_caller(tmp_path, monkeypatch):
    """The first build fails (say, a certificate store unreadable for a moment): that caller sees the error, the next
    one builds again instead of re-raising the same error for the rest of the session."""
    from app.config import Settings
    from app.market import history
    from app.session import Session

    made: list[httpx.AsyncClient] = []
    real = history.make_client

    def flaky(*a, **k):
        if not made:
            made.append(None)
            raise OSError("certificates unreadable")
        made.append(real(*a, **k))
        return made[-1]

    monkeypatch.setattr(history, "make_client", flaky)
    s = Settings(symbols=["XRPUSDT"], sim_process=False, history_bars=0, journal_path=tmp_path / "j.sqlite3",
                 decision_source="rules")
    session = Session(s)
    try:
        with pytest.raises(OSError):
            await session._http_client()
        client = await session._http_client()
        assert client is made[-1] and isinstance(client, httpx.AsyncClient)
        assert await session._http_client() is client
    finally:
        await session.stop()
    assert client.is_closed


@pytest.mark.asyncio
async def test_a_rest_client_still_being_built_at_stop_is_waited_for_and_closed(tmp_path, monkeypatch):
    """A session stopped while its REST client was being built in a worker thread: the thread is waited for (it must
    not outlive the loop) and the client it made is closed, not left open."""
    import threading

    from app.config import Settings
    from app.market import history
    from app.session import Session

    release = threading.Event()
    made: list[httpx.AsyncClient] = []
    real = history.make_client

    def slow(*a, **k):
        release.wait(5)
        made.append(real(*a, **k))
        return made[-1]

    monkeypatch.setattr(history, "make_client", slow)
    session = Session(Settings(symbols=["XRPUSDT"], sim_process=False, history_bars=0,
                               journal_path=tmp_path / "j.sqlite3", decision_source="rules"))
    asker = asyncio.ensure_future(session._http_client())
    await asyncio.sleep(0.05)
    asker.cancel()  # the part that asked is gone (the session is stopping); the build goes on in its thread
    asyncio.get_running_loop().call_later(0.2, release.set)
    await session.stop()
    assert made and made[0].is_closed
