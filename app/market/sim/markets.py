"""Several synthetic markets behind one built-in exchange, so the terminal can watch many symbols on one connection.

Each symbol is its own deterministic SyntheticMarket; this source advances them together on one clock and routes
REST requests (depth, klines) to the market of the symbol asked for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Container, Sequence
from decimal import Decimal
from typing import Any

from app.market.sim.synthetic import MAX_CATCHUP_MS, SyntheticMarket

TICK_S = 0.025
SLICE_MS = 5  # market time generated between checks of the work budget
WORK_BUDGET_S = 0.001  # generation between two turns of the event loop, at most about this (plus one slice)
# Starting prices and price decimals of the symbols the built-in exchange knows by name; others start at 100.
KNOWN = {
    "BTCUSDT": (60_000.0, 2),
    "ETHUSDT": (3_000.0, 2),
    "SOLUSDT": (150.0, 2),
    "BNBUSDT": (550.0, 2),
    "XRPUSDT": (0.6, 4),
    "ADAUSDT": (0.45, 4),
    "DOGEUSDT": (0.12, 5),
}


def market_for(symbol: str, trades_per_s: float, seed: int | None = None, *, start_ms: int | None = None
               ) -> SyntheticMarket:
    """That symbol's market near its known price; the default seed makes the same market every run (a restart
    continues it)."""
    price, decimals = KNOWN.get(symbol.upper(), (100.0, 2))
    return SyntheticMarket(symbol=symbol, start_price=price, trades_per_s=trades_per_s, seed=seed,
                           price_decimals=decimals, start_ms=start_ms)


class MultiMarket:
    """A MarketSource (see app/market/sim/source.py) made of one SyntheticMarket per symbol."""

    paced = True
    wait_for_subscriber = False

    def __init__(self, markets: Sequence[SyntheticMarket]) -> None:
        if not markets:
            raise ValueError("at least one market")
        self.markets = {m.symbol: m for m in markets}
        self.label = "synthetic " + ", ".join(self.markets)
        self.finished = asyncio.Event()  # generated markets never end

    @classmethod
    def for_symbols(cls, symbols: Sequence[str], trades_per_s: float, seed: int | None = None) -> MultiMarket:
        return cls([market_for(s, trades_per_s, seed) for s in symbols])

    def serves(self, stream: str) -> bool:
        return any(m.serves(stream) for m in self.markets.values())

    async def batches(self, wanted: Container[str]) -> AsyncIterator[list[Any]]:
        # This exchange shares the terminal's event loop, and five busy symbols are several ms of generation per
        # tick (more in a volatility burst). So each tick runs the markets forward in slices of SLICE_MS of
        # market time, and gives the loop a turn whenever WORK_BUDGET_S of work has built up since the last one.
        # Markets are event-timed, so slicing changes nothing in what they produce.
        last_ms = time.time_ns() // 1_000_000
        while True:
            await asyncio.sleep(TICK_S)
            now_ms = time.time_ns() // 1_000_000
            start_ms = max(last_ms, now_ms - MAX_CATCHUP_MS)
            if start_ms > last_ms:  # a longer silence is quiet time, and the slices start after it
                for m in self.markets.values():
                    m.skip_silence(start_ms)
            last_ms = now_ms
            turn = time.perf_counter()
            for until_ms in range(start_ms + SLICE_MS, now_ms + SLICE_MS, SLICE_MS):
                frames: list[Any] = []
                for m in self.markets.values():
                    frames.extend(m.advance(min(until_ms, now_ms), wanted))
                if frames:
                    yield frames
                if time.perf_counter() - turn > WORK_BUDGET_S:
                    await asyncio.sleep(0)
                    turn = time.perf_counter()

    async def depth_snapshot(self, symbol: str, limit: int) -> dict[str, Any]:
        return await self._market(symbol).depth_snapshot(symbol, limit)

    async def klines(
        self, symbol: str, interval: str, limit: int, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[list[Any]]:
        return await self._market(symbol).klines(symbol, interval, limit, start_ms, end_ms)

    def levels(self, symbol: str, side: str, depth: int) -> list[tuple[Decimal, Decimal]]:
        """That symbol's book (SyntheticMarket.levels); none for a symbol this exchange does not make."""
        m = self.markets.get(symbol.upper())
        return m.levels(symbol, side, depth) if m is not None else []

    def _market(self, symbol: str) -> SyntheticMarket:
        m = self.markets.get(symbol.upper())
        # An unknown symbol is answered by any market, which raises the exchange's own "invalid symbol" error.
        return m if m is not None else next(iter(self.markets.values()))
