"""Recent candle history over the exchange's REST API, so the chart opens full instead of empty."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from app.market.adapters import binance
from app.models import Candle

if TYPE_CHECKING:
    import httpx


def make_client(timeout_s: float = 5.0) -> httpx.AsyncClient:
    """Imports httpx and builds its client: blocking work (certificates), meant for a worker thread."""
    import httpx

    return httpx.AsyncClient(timeout=timeout_s)


async def fetch_binance_klines(
    client: httpx.AsyncClient, rest_base: str, symbol: str, timeframe: str, limit: int,
    path: str = "/api/v3/klines",  # futures: /fapi/v1/klines, same rows
) -> list[Candle]:
    resp = await client.get(
        f"{rest_base.rstrip('/')}{path}",
        params={"symbol": symbol.upper(), "interval": timeframe, "limit": limit},
    )
    resp.raise_for_status()
    rows = resp.json()
    if not isinstance(rows, list):
        raise ValueError("klines answer is not a list")
    return binance.parse_klines(rows, symbol, timeframe, time.perf_counter_ns())
