"""MarketState: the numbers a decision is made from, and nothing else.

The prompt is built only from it and the decision cache keys on it, so what the model sees and what the cache
compares are the same thing. Prices and levels are float64 market data; the scale-free features (returns, spreads
in %, RSI, ratios) are what similarity is judged on.

``compute_state`` derives a MarketState from a CandleSeries; ``states_from_recording`` replays a recorded feed
through the live adapter and yields one state per interval of exchange time.

The state is made of CLOSED BARS PLUS THE LIVE PRICE. Every indicator is computed on bars that have closed, so
within one bar they do not move and a bar a few seconds old never drives them; only the live features follow the
trades of the bar that is forming. How each feature is defined (``tf`` is the timeframe, ``now`` the instant the
state describes, ``now_ms``):

- Closed bars: the bars whose close (open + tf) is at or before ``now``. Bars missing between the newest bar held
  and ``now`` (no trade in them: a quiet symbol) count as flat closed bars at the last close with no volume,
  exactly as CandleSeries fills them once the next trade comes. The forming bar (open <= now < close), if one is
  held, contributes only the live price: its high, low and volume are used nowhere.
- Live price: ``last_price``, the close of the newest bar held, i.e. the price of the last trade.
- ``ret_k`` (k = 1, 5, 15, 60): % change between the close of the last closed bar and the close k closed bars
  before it, so ``ret_1`` is the last closed bar's own return; when fewer than k + 1 closed bars exist, against
  the oldest closed close.
- ``ema_fast``/``ema_slow``: EMAs of the closed closes (pandas ``ewm(span, adjust=False)``); ``ema_spread_pct`` is
  ``(fast - slow) / slow`` in %.
- ``rsi``: RSI(14) of the closed closes with Wilder's smoothing; on fewer than 15 closed bars, from the changes
  there are; 50 when nothing moved.
- ``atr_pct``: ATR(14) of the closed bars (Wilder, true range) in % of the last closed close.
- ``vwap``: volume-weighted typical price over the last ``VWAP_BARS`` (500) closed bars (a rolling window, so it
  does not depend on how much history happens to be held); the last closed close when they had no volume.
- ``volume_ratio``: the last closed bar's volume over the mean of the 20 closed bars before it; 1.0 with fewer
  than 21 closed bars, or when all of them had no volume; capped at ``VOLUME_RATIO_MAX`` (a burst after 20 silent
  bars would otherwise be infinite).
- Live features, the only ones that change within a bar (with ``last_price``):
  ``vwap_dist_pct`` = ``(live - vwap) / vwap`` in %; ``move_pct`` = ``(live - last closed close) / last closed
  close`` in %, the forming bar so far (0 when no trade came since the last close);
  ``spread_bps`` = ``(ask - bid) / mid`` of the quote in basis points, 0.0 without a usable quote.
- ``exchange_ms``: ``now``, when the state was made; never in the future. ``bar_close_ms``: the close time of the
  newest closed bar, so a state says which bars it was made from (two states with the same ``bar_close_ms`` have
  the same closed-bar features).
- ``now_ms=None`` means "just after the newest trade": the newest bar held is taken as forming, and both
  ``exchange_ms`` and ``bar_close_ms`` are its open (the newest trade's time is at or after it, so the stamp is
  never ahead of the data). The app always passes ``now_ms``.
- Window. Every indicator is computed on the last ``tail_length(fast, slow)`` closed bars (500 for the defaults),
  never on the whole history, so the cost is bounded whatever the capacity: a smoothing started that far back has
  forgotten its seed to below 1e-16 (``(1 - alpha)^500`` for the slowest alpha), so the values equal those over
  the full history to rounding. Slower EMAs lengthen the window to keep that true.

Every feature is finite; ``compute_state`` returns None below ``MIN_BARS`` closed bars.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import lru_cache
from os import PathLike
from pathlib import Path

import numpy as np

from app.market.adapters import ParseError, binance
from app.market.candles import TIMEFRAMES, CandleSeries
from app.market.indicators import ema_alpha, ema_last, true_range
from app.market.recording import iter_frames
from app.models import BookUpdate, Quote, Trade

log = logging.getLogger(__name__)


class PositionState(StrEnum):
    FLAT = "FLAT"
    LONG = "LONG"
    SHORT = "SHORT"


# Scale-free features, in a fixed order: these feed the cache key and the prompt's numbers (the module docstring
# defines each). New features go last, so stored orders of values stay readable.
FEATURE_NAMES: tuple[str, ...] = (
    "ret_1",  # % return of the last closed bar of the decision timeframe
    "ret_5",  # % over the last 5 closed bars
    "ret_15",  # % over the last 15 closed bars
    "ret_60",  # % over the last 60 closed bars
    "ema_spread_pct",  # (EMA fast - EMA slow) / EMA slow of the closed closes, %
    "rsi",  # RSI(14) of the closed closes, 0..100
    "atr_pct",  # ATR(14) of the closed bars / last closed close, %
    "vwap_dist_pct",  # (live price - VWAP of the closed bars) / VWAP, %
    "volume_ratio",  # last closed bar's volume / mean of the 20 closed before it
    "spread_bps",  # (ask - bid) / mid of the live quote, basis points
    "move_pct",  # (live price - last closed close) / last closed close, %: the forming bar so far
)


@dataclass(frozen=True, slots=True)
class MarketState:
    symbol: str
    timeframe: str
    exchange_ms: int  # exchange time the state describes: when it was made, never in the future
    bar_close_ms: int  # close time of the newest closed bar the indicators were computed on
    last_price: float
    ema_fast: float
    ema_slow: float
    vwap: float
    ret_1: float
    ret_5: float
    ret_15: float
    ret_60: float
    ema_spread_pct: float
    rsi: float
    atr_pct: float
    vwap_dist_pct: float
    volume_ratio: float
    spread_bps: float
    move_pct: float
    position: PositionState = PositionState.FLAT
    position_pnl_sign: int = 0  # -1 losing, 0 flat or even, +1 winning

    def features(self) -> tuple[float, ...]:
        """The scale-free features in FEATURE_NAMES order."""
        return tuple(getattr(self, name) for name in FEATURE_NAMES)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# ------------------------------------------------------------------------------------------- compute_state

MIN_BARS = 2  # closed bars: a return needs a previous close
RETURN_BARS = (1, 5, 15, 60)  # ret_1 .. ret_60
RSI_BARS = 14
ATR_BARS = 14
VOLUME_BARS = 20
VWAP_BARS = 500
TAIL_BARS = 500  # the shortest window the indicators look at, see tail_length
VOLUME_RATIO_MAX = 1000.0
_FORGET = -math.log(1e-16)  # a smoothing's seed weighs (1 - alpha)^k: below 1e-16 after _FORGET / -ln(1 - alpha)


@lru_cache(maxsize=16)
def tail_length(fast: int = 12, slow: int = 26) -> int:
    """How many of the newest bars compute_state reads: enough for every smoothing to forget its seed."""
    alpha = min(ema_alpha(fast), ema_alpha(slow), 1.0 / RSI_BARS, 1.0 / ATR_BARS)
    return max(TAIL_BARS, VWAP_BARS, RETURN_BARS[-1] + 1, math.ceil(_FORGET / -math.log1p(-alpha)))


def compute_state(
    series: CandleSeries,
    *,
    symbol: str,
    quote_bid: float | None,
    quote_ask: float | None,
    position: PositionState = PositionState.FLAT,
    position_pnl_sign: int = 0,
    fast: int = 12,
    slow: int = 26,
    now_ms: int | None = None,
) -> MarketState | None:
    """The MarketState of ``series`` at ``now_ms`` (module docstring: definitions), or None with fewer than
    MIN_BARS closed bars.

    ``now_ms`` (exchange time) is the instant the state describes: it decides which bars have closed, and it is
    the state's ``exchange_ms``. It must not be before the newest bar opened. None takes the newest bar as forming.
    """
    held = len(series)
    if held == 0:
        return None
    a = series.arrays()
    tf = series.tf_ms
    last_open = int(a.open_ms[-1])
    now = last_open if now_ms is None else int(now_ms)
    if now < last_open:
        raise ValueError(f"now_ms {now} is before the newest bar, which opened at {last_open}")
    # 0: the newest bar held is forming; q >= 1: it has closed, and so have q - 1 bars without a trade after it.
    closed_since = (now - last_open) // tf
    closed_count = held - 1 + closed_since
    if closed_count < MIN_BARS:
        return None
    tail = tail_length(fast, slow)
    if closed_since == 0:
        start, stop = max(0, held - 1 - tail), held - 1
        high, low, close, volume = a.high[start:stop], a.low[start:stop], a.close[start:stop], a.volume[start:stop]
    else:
        start = max(0, held - tail)
        high, low, close, volume = a.high[start:], a.low[start:], a.close[start:], a.volume[start:]
        if closed_since > 1:
            high, low, close, volume = _with_flat_bars(high, low, close, volume, min(closed_since - 1, tail), tail)

    live = float(a.close[-1])
    m = close.size
    last_closed = float(close[-1])
    rets = [(last_closed / float(close[max(0, m - 1 - k)]) - 1.0) * 100.0 for k in RETURN_BARS]
    ema_f = ema_last(close, fast)
    ema_s = ema_last(close, slow)
    change = np.diff(close)
    # Clamped at 0: after hundreds of flat bars both averages are rounding noise around 0 (ema_last works on offsets
    # from the first value), and a negative one would put RSI outside 0..100.
    gain = max(ema_last(np.maximum(change, 0.0), alpha=1.0 / RSI_BARS), 0.0)
    loss = max(ema_last(np.maximum(-change, 0.0), alpha=1.0 / RSI_BARS), 0.0)
    rsi = 100.0 * gain / (gain + loss) if gain + loss > 0.0 else 50.0
    atr = ema_last(true_range(high, low, close), alpha=1.0 / ATR_BARS)
    w = min(VWAP_BARS, m)
    vol = volume[-w:]
    vol_sum = float(vol.sum())
    typical = (high[-w:] + low[-w:] + close[-w:]) / 3.0
    vwap = float(typical @ vol) / vol_sum if vol_sum > 0.0 else last_closed
    state = MarketState(
        symbol=symbol,
        timeframe=series.timeframe,
        exchange_ms=now,
        bar_close_ms=last_open + closed_since * tf,
        last_price=live,
        ema_fast=ema_f,
        ema_slow=ema_s,
        vwap=vwap,
        ret_1=rets[0],
        ret_5=rets[1],
        ret_15=rets[2],
        ret_60=rets[3],
        ema_spread_pct=(ema_f - ema_s) / ema_s * 100.0,
        rsi=rsi,
        atr_pct=atr / last_closed * 100.0,
        vwap_dist_pct=(live - vwap) / vwap * 100.0,
        volume_ratio=_volume_ratio(volume),
        spread_bps=spread_bps(quote_bid, quote_ask),
        move_pct=(live - last_closed) / last_closed * 100.0,
        position=position,
        position_pnl_sign=position_pnl_sign,
    )
    for name in ("last_price", "ema_fast", "ema_slow", "vwap", *FEATURE_NAMES):
        if not math.isfinite(getattr(state, name)):
            raise ValueError(f"{name} is not finite in the state of {symbol}: the bars hold a non-finite value")
    return state


def _with_flat_bars(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, count: int, tail: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The columns with ``count`` flat bars at the last close appended, cut to the newest ``tail``."""
    flat = np.full(count, close[-1])
    return (
        np.concatenate((high, flat))[-tail:],
        np.concatenate((low, flat))[-tail:],
        np.concatenate((close, flat))[-tail:],
        np.concatenate((volume, np.zeros(count)))[-tail:],
    )


def _volume_ratio(closed_volume: np.ndarray) -> float:
    """The last closed bar's volume over the mean of the VOLUME_BARS closed bars before it."""
    if closed_volume.size < VOLUME_BARS + 1:
        return 1.0
    last_closed = float(closed_volume[-1])
    mean = float(closed_volume[-VOLUME_BARS - 1 : -1].mean())
    if mean > 0.0:
        return min(last_closed / mean, VOLUME_RATIO_MAX)
    return VOLUME_RATIO_MAX if last_closed > 0.0 else 1.0


def spread_bps(bid: float | None, ask: float | None) -> float:
    """``(ask - bid) / mid`` in basis points; 0.0 when either side is missing, not positive or not finite.

    A crossed quote (ask below bid) gives a negative spread, as reported."""
    if bid is None or ask is None:
        return 0.0
    if not (0.0 < bid < math.inf and 0.0 < ask < math.inf):
        return 0.0
    return (ask - bid) / ((ask + bid) / 2.0) * 10_000.0


# ------------------------------------------------------------------------------------------------- replay

DEPTH_LATENESS_MS = 500  # how far a depth event's time may run ahead of trades still to come in the stream


def states_from_recording(
    path: str | PathLike[str] | Iterable[str | PathLike[str]],
    *,
    symbol: str = "BTCUSDT",
    timeframe: str = "1s",
    every_ms: int = 1000,
    fast: int = 12,
    slow: int = 26,
) -> Iterator[MarketState]:
    """Replay a Binance recording (or several files of one session, in order) and yield a MarketState at every
    multiple of ``every_ms`` of exchange time, once the series holds MIN_BARS bars.

    Frames are parsed by the live adapter; trades of ``symbol`` build a CandleSeries of ``timeframe`` and its
    bookTicker quotes give the spread. The state at time t covers the trades with exchange time before t, and its
    ``exchange_ms`` is t. Exchange time advances with trade times and with depth-update event times less
    DEPTH_LATENESS_MS (in the real capture a trade arrives at most 166 ms after a depth event stamped later than
    it); bookTicker carries no time, so a quote counts from its place in the stream. The state at t is emitted
    once the stream has passed t, before the event that passed it is applied. The result depends only on the
    file, never on the wall clock. Frames the adapter rejects are skipped, counted and logged.
    """
    if every_ms <= 0:
        raise ValueError("every_ms must be positive")
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")
    want = symbol.upper()
    series = CandleSeries(timeframe, capacity=4 * tail_length(fast, slow))
    bid: float | None = None
    ask: float | None = None
    clock = -(2**62)
    next_t: int | None = None
    rejected = 0
    for p in _paths(path):
        for recv_ns, raw in iter_frames(p):
            try:
                events = binance.parse(raw, recv_ns or 0)
            except ParseError:
                rejected += 1
                continue
            for ev in events:
                if ev.symbol.upper() != want:
                    continue
                if isinstance(ev, Quote):
                    bid, ask = ev.bid, ev.ask
                    continue
                if isinstance(ev, Trade):
                    t_ev = ev.exchange_ms
                elif isinstance(ev, BookUpdate) and ev.exchange_ms:
                    t_ev = ev.exchange_ms - DEPTH_LATENESS_MS
                else:
                    continue
                if t_ev > clock:
                    clock = t_ev
                    if next_t is None:
                        next_t = (clock // every_ms + 1) * every_ms
                    while next_t <= clock:  # the stream has passed next_t: every event before it is in
                        state = compute_state(
                            series, symbol=want, quote_bid=bid, quote_ask=ask, fast=fast, slow=slow, now_ms=next_t
                        )
                        if state is not None:
                            yield state
                        next_t += every_ms
                if isinstance(ev, Trade):
                    series.add_trade(ev.exchange_ms, ev.price, ev.qty)
    if rejected:
        log.warning("states_from_recording: %d frames rejected by the adapter were skipped", rejected)


def _paths(path: str | PathLike[str] | Iterable[str | PathLike[str]]) -> list[Path]:
    if isinstance(path, str | PathLike):
        return [Path(path)]
    return [Path(p) for p in path]
