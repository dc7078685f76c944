"""``--rest-url`` means one thing: the exchange's own REST API. For Coinbase and Kraken that is their instruments
endpoint, and nothing Binance-shaped (klines, depth, exchangeInfo) is ever asked of it.

The feed comes from a built-in exchange speaking the exchange's protocol; the REST URL is a real HTTP server on
127.0.0.1 that writes down every request and answers 404 (the terminal then says the instruments are unknown)."""

from __future__ import annotations

import asyncio

import pytest

from app.config import Settings
from app.market.sim.markets import MultiMarket
from app.market.sim.server import ExchangeSimulator
from app.session import Session
from tests.conftest import wait_until


async def _recording_http_server(paths: list[str]):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        paths.append(head.split(b" ", 2)[1].decode())
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("exchange", "instruments_path"), [
    ("coinbase", "/api/v3/brokerage/market/products/BTC-USDT"), ("kraken", "/0/public/AssetPairs")])
async def test_rest_url_of_coinbase_or_kraken_is_asked_for_instruments_only(exchange, instruments_path, tmp_path):
    paths: list[str] = []
    server = await _recording_http_server(paths)
    rest_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with ExchangeSimulator(MultiMarket.for_symbols(["BTCUSDT"], 50.0), protocol=exchange) as sim:
        ws_url = sim.ws_url + ("/v2" if exchange == "kraken" else "")
        session = Session(Settings(exchange=exchange, symbol="BTCUSDT", symbols=["BTCUSDT"], ws_url=ws_url,
                                   rest_url=rest_url, history_bars=5, journal_path=tmp_path / "j.sqlite3"))
        await session.start()
        try:
            # Trades flowing: the market task is past its history stage, the desk past its first book check.
            # The server logs the request before the terminal has read its 404: wait for the answer to be handled.
            await wait_until(lambda: session.market["BTCUSDT"].trades >= 5 and instruments_path in
                             [p.split("?")[0] for p in paths] and "BTCUSDT" in session.instruments.problems,
                             timeout=30, what="trades and the instruments request answered")
        finally:
            await session.stop()
            server.close()
    # No klines, no depth, no exchangeInfo: only the product (Coinbase asks it again for its 24 h change).
    assert {p.split("?")[0] for p in paths} == {instruments_path}
    assert "BTCUSDT" in session.instruments.problems  # a 404 is said to the trader, safe defaults used
