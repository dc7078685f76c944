"""24 h statistics per symbol (last, open, high, low, change, quote volume), where the exchange gives them over REST.

Binance spot ``GET /api/v3/ticker/24hr?symbols=[...]`` (one request) and USD-M futures ``GET /fapi/v1/ticker/24hr
?symbol=X`` (one per symbol); the built-in exchange serves spot's path from its own market whatever protocol its
WebSocket speaks. Coinbase Advanced Trade's product endpoint (the one the instruments come from) gives the price and
its 24 h change. Kraken's public ticker gives the change since 00:00 UTC, not over 24 h: nothing is shown for it,
and the watchlist says why.

The answer is untrusted: every value is checked (finite, positive, low <= open, last <= high, a change that agrees
with open and last, a symbol that was asked for) and a bad entry is refused, counted and said, never shown. The
poller asks slowly (every minute) on the session's REST client; a failure is counted and logged, never fatal, and
the previous figures are shown until they are ``max_age_s`` old.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.market.instruments import MAX_AMOUNT

if TYPE_CHECKING:
    import httpx

    from app.market.exchanges import FeedPlan

log = logging.getLogger(__name__)

POLL_S = 60.0  # the exchange's 24 h figures move slowly; a minute is fresh enough and costs next to nothing
MAX_AGE_S = 300.0  # figures older than this (the exchange stopped answering) are not shown as current
SPOT_PATH = "/api/v3/ticker/24hr"
FUTURES_PATH = "/fapi/v1/ticker/24hr"
COINBASE_REST = "https://api.coinbase.com"
# Largest 24 h move taken: a thousandfold rise is no market's, it is a unit mix-up or a hostile answer.
MAX_RATIO = 1000.0
KRAKEN_WHY = ("Kraken's public ticker gives the change since 00:00 UTC, not over 24 h, so the watchlist shows none "
              "rather than a different number under the same name")


class Ticker24hError(ValueError):
    """An entry that cannot be shown; the message says which value and why."""


@dataclass(frozen=True, slots=True)
class Ticker24h:
    symbol: str
    last: float
    open: float  # the price 24 h ago (the rolling window's first)
    change_pct: float  # (last - open) / open * 100
    high: float | None  # None where the exchange does not give it (Coinbase's product endpoint)
    low: float | None
    quote_volume: float | None  # traded in the quote currency over the 24 h
    close_ms: int  # the window's end, exchange time (0: not given)
    received_ms: int  # wall clock when the answer arrived


@dataclass(frozen=True, slots=True)
class Ticker24hSource:
    api: str  # "binance" (spot path, also the built-in exchange), "binance-futures" or "coinbase"
    base: str  # the REST base


def source_for(exchange: str, feed: FeedPlan, *, simulated: bool) -> Ticker24hSource | str:
    """Where this feed's 24 h statistics come from, or why there are none (a sentence for the trader).
    ``exchange``: the feed's exchange (the built-in exchange's dialect when ``simulated``)."""
    if simulated:  # the built-in exchange serves Binance's REST API whatever its WebSocket speaks
        return Ticker24hSource("binance", feed.rest_base) if feed.rest_base else "the built-in exchange has no REST"
    if exchange in ("binance", "binance-futures"):
        if feed.rest_base is None:
            return "no REST endpoint for this exchange"
        return Ticker24hSource(exchange, feed.rest_base)
    if exchange == "coinbase":
        return Ticker24hSource("coinbase", feed.instruments_base or COINBASE_REST)
    if exchange == "kraken":
        return KRAKEN_WHY
    return f"no 24 h statistics for {exchange}"


class Ticker24hUnavailable:
    """What the watchlist reads where the exchange gives no 24 h statistics: none, and the reason."""

    def __init__(self, why: str) -> None:
        self.why = why

    def get(self, symbol: str) -> Ticker24h | None:
        return None

    def why_missing(self, symbol: str) -> str:
        return self.why


# ----- parsing (pure) -----------------------------------------------------------------------------------------
def _num(entry: Mapping[str, Any], name: str, *, sign: str = "positive", optional: bool = False) -> float | None:
    """``sign``: "positive", "nonneg" or "any"."""
    v = entry.get(name)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise Ticker24hError(f"{name} is {v!r}, not a number")
    try:
        x = float(v)
    except OverflowError:  # a JSON integer of hundreds of digits: valid JSON, no float holds it
        raise Ticker24hError(f"{name} is an integer of about {int(abs(v)).bit_length() * 0.30103:.0f} digits, "
                             "too large to be a price or volume") from None
    except (ArithmeticError, ValueError):
        raise Ticker24hError(f"{name} is {v!r:.40}, not a number") from None
    if not math.isfinite(x):
        raise Ticker24hError(f"{name} is {v!r}, not a finite number")
    if sign == "positive" and x <= 0:
        raise Ticker24hError(f"{name} {v} is not positive")
    if sign == "nonneg" and x < 0:
        raise Ticker24hError(f"{name} {v} is negative")
    if abs(x) > float(MAX_AMOUNT):
        raise Ticker24hError(f"{name} {v} is too large to be a price or volume")
    return x


def _checked(symbol: str, last: float, open_: float, high: float | None, low: float | None) -> None:
    if max(last, open_) / min(last, open_) > MAX_RATIO:
        raise Ticker24hError(f"a move from {open_:g} to {last:g} in 24 h is not believable")
    if high is not None and low is not None:
        slack = 1e-9 * high
        if low > high:
            raise Ticker24hError(f"low {low:g} is above high {high:g}")
        if not (low - slack <= last <= high + slack and low - slack <= open_ <= high + slack):
            raise Ticker24hError(f"last {last:g} or open {open_:g} lies outside the day's range {low:g}–{high:g}")


def parse_binance_entry(entry: Any, received_ms: int) -> Ticker24h:
    """One entry of Binance's ``/ticker/24hr`` (spot or USD-M futures)."""
    if not isinstance(entry, Mapping):
        raise Ticker24hError("an entry is not an object")
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise Ticker24hError(f"symbol is {symbol!r}")
    last, open_ = _num(entry, "lastPrice"), _num(entry, "openPrice")
    high, low = _num(entry, "highPrice"), _num(entry, "lowPrice")
    assert last is not None and open_ is not None
    _checked(symbol, last, open_, high, low)
    change = (last - open_) / open_ * 100
    given = _num(entry, "priceChangePercent", sign="any", optional=True)
    # Binance rounds the percentage to 2 or 3 decimals; one that disagrees beyond that is not about these prices.
    if given is not None and abs(given - change) > 0.01 + 1e-3 * abs(change):
        raise Ticker24hError(f"priceChangePercent {given:g} disagrees with open {open_:g} and last {last:g}")
    close_ms = entry.get("closeTime", 0)
    if isinstance(close_ms, bool) or not isinstance(close_ms, int) or close_ms < 0:
        raise Ticker24hError(f"closeTime is {close_ms!r}")
    return Ticker24h(symbol.upper(), last, open_, change, high, low,
                     _num(entry, "quoteVolume", sign="nonneg", optional=True), close_ms, received_ms)


def parse_binance_answer(data: Any, symbols: Iterable[str], received_ms: int
                         ) -> tuple[dict[str, Ticker24h], dict[str, str]]:
    """A whole answer (a list, or one object for a single symbol) -> (figures per symbol asked for, {key: why
    refused}). A symbol nobody asked for is refused too (key: what the entry called itself)."""
    wanted = {s.upper() for s in symbols}
    entries = [data] if isinstance(data, Mapping) and "symbol" in data else data
    if not isinstance(entries, list):
        raise Ticker24hError("the answer is not a list of symbols")
    found: dict[str, Ticker24h] = {}
    problems: dict[str, str] = {}
    for entry in entries:
        name = entry.get("symbol") if isinstance(entry, Mapping) else None
        key = name.upper() if isinstance(name, str) else f"entry {len(found) + len(problems) + 1}"
        if isinstance(name, str) and key not in wanted:
            problems[key] = f"{key} was not asked for"
            continue
        try:
            found[key] = parse_binance_entry(entry, received_ms)
        except Ticker24hError as exc:
            problems[key] = str(exc)
    return found, problems


def parse_coinbase_product(data: Any, symbol: str, received_ms: int) -> Ticker24h:
    """Advanced Trade ``/api/v3/brokerage/market/products/{id}``: ``price`` and ``price_percentage_change_24h``
    (no high or low there)."""
    if not isinstance(data, Mapping):
        raise Ticker24hError("the answer is not an object")
    last = _num(data, "price")
    pct = _num(data, "price_percentage_change_24h", sign="any")
    assert last is not None and pct is not None
    if pct <= -100:
        raise Ticker24hError(f"a 24 h change of {pct:g} % is not possible")
    open_ = last / (1 + pct / 100)
    _checked(symbol, last, open_, None, None)
    volume = _num(data, "volume_24h", sign="nonneg", optional=True)
    return Ticker24h(symbol.upper(), last, open_, pct, None, None, None if volume is None else volume * last, 0,
                     received_ms)


# ----- polling (I/O) ------------------------------------------------------------------------------------------
class Ticker24hPoller:
    """Asks ``source`` for the 24 h figures of ``symbols`` every ``interval_s``. ``client``: returns the session's
    REST client. Counters: ``polls``, ``failures`` (a request that failed or an answer unreadable as a whole),
    ``refused`` (entries refused at the boundary)."""

    def __init__(self, client: Callable[[], Awaitable[httpx.AsyncClient]], source: Ticker24hSource,
                 symbols: Iterable[str], *, interval_s: float = POLL_S, max_age_s: float = MAX_AGE_S,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._client = client
        self.source = source
        self.symbols = [s.upper() for s in symbols]
        self.interval_s = interval_s
        self.max_age_s = max_age_s
        self._wall_ms = wall_ms
        self.stats: dict[str, Ticker24h] = {}
        self.problems: dict[str, str] = {}  # symbol -> why its figures are not shown
        self.polls = self.failures = self.refused = 0
        self.last_error = ""

    # what the watchlist reads
    def get(self, symbol: str) -> Ticker24h | None:
        t = self.stats.get(symbol.upper())
        if t is None or self._wall_ms() - t.received_ms > self.max_age_s * 1000:
            return None
        return t

    def why_missing(self, symbol: str) -> str:
        """Why ``symbol`` has no figures now, in the trader's words; "" when it has."""
        s = symbol.upper()
        if self.get(s) is not None:
            return ""
        if s in self.problems:
            return f"24 h statistics for {s} refused: {self.problems[s]}"
        if self.last_error:
            return f"24 h statistics unavailable: {self.last_error}"
        if s in self.stats:
            return f"24 h statistics for {s} are older than {self.max_age_s / 60:g} min"
        return "24 h statistics not loaded yet" if self.polls == 0 else f"the exchange gave none for {s}"

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval_s)

    async def poll_once(self) -> None:
        """One round of requests. Never raises for the network or the answer: those are counted and logged."""
        import httpx

        self.polls += 1
        try:
            client = await self._client()
            answers = await self._fetch(client)
        except httpx.HTTPStatusError as exc:
            return self._failed(f"the exchange answered HTTP {exc.response.status_code}")
        except (httpx.HTTPError, Ticker24hError, ValueError, ArithmeticError) as exc:
            # ArithmeticError: whatever an answer can still overflow past the per-value checks is the answer's
            # fault, counted as a failure; it must not end the poller's task (a FAULT).
            return self._failed(str(exc)[:200] or type(exc).__name__)
        self.last_error = ""
        for found, problems in answers:
            self.stats.update(found)
            for s in found:
                self.problems.pop(s, None)
            for s, why in problems.items():
                self.refused += 1
                self.stats.pop(s, None)  # the previous figures are not shown as if they were current
                if s in self.symbols:
                    self.problems[s] = why
                log.warning("24 h statistics: %s refused: %s", s, why)

    def _failed(self, why: str) -> None:
        self.failures += 1
        self.last_error = why
        # Once, then every tenth: a minute's poll against a dead endpoint must not fill the log.
        if self.failures == 1 or self.failures % 10 == 0:
            log.warning("24 h statistics from %s failed (%d so far): %s", self.source.base, self.failures, why)

    async def _fetch(self, client: httpx.AsyncClient) -> list[tuple[dict[str, Ticker24h], dict[str, str]]]:
        base = self.source.base.rstrip("/")
        api = self.source.api
        if api == "binance":
            resp = await client.get(f"{base}{SPOT_PATH}",
                                    params={"symbols": json.dumps(self.symbols, separators=(",", ":"))})
            resp.raise_for_status()
            return [parse_binance_answer(resp.json(), self.symbols, self._wall_ms())]
        out = []
        for symbol in self.symbols:
            if api == "binance-futures":
                resp = await client.get(f"{base}{FUTURES_PATH}", params={"symbol": symbol})
                resp.raise_for_status()
                out.append(parse_binance_answer(resp.json(), [symbol], self._wall_ms()))
            elif api == "coinbase":
                from app.market.adapters.coinbase import to_product

                resp = await client.get(f"{base}/api/v3/brokerage/market/products/{to_product(symbol)}")
                resp.raise_for_status()
                try:
                    out.append(({symbol: parse_coinbase_product(resp.json(), symbol, self._wall_ms())}, {}))
                except Ticker24hError as exc:
                    out.append(({}, {symbol: str(exc)}))
            else:
                raise Ticker24hError(f"unknown statistics API {api!r}")
        return out


def for_feed(exchange: str, feed: FeedPlan, *, simulated: bool, client: Callable[[], Awaitable[httpx.AsyncClient]],
             symbols: Iterable[str]) -> Ticker24hPoller | Ticker24hUnavailable:
    """The session's 24 h statistics for this feed: a poller (to run, supervised) or the reason there are none."""
    source = source_for(exchange, feed, simulated=simulated)
    if isinstance(source, str):
        return Ticker24hUnavailable(source)
    return Ticker24hPoller(client, source, symbols)
