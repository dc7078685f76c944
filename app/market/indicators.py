"""Technical indicators: vectorised over a whole history, incremental on the live bar.

Every indicator comes twice and both forms give the same numbers (to rounding):

- a function over numpy arrays (oldest first) that returns arrays of the same length, NaN where the definition
  has not seen enough bars yet (the warm-up);
- a small state object for the live feed. ``update(bar)`` advances it by one closed bar and returns that bar's
  value; ``peek(bar)`` returns the value the forming bar would have if it closed now and changes nothing, so it
  can be called on every tick in O(1) without touching history. ``from_history(...)`` primes a state from the
  closed bars already held, so the live feed continues exactly where the vectorised history stops.

Definitions (the references the tests compare with, on real data, are plain pandas):

- EMA: ``y[0] = x[0]``, ``y[i] = (1 - a) y[i-1] + a x[i]`` with ``a = 2 / (span + 1)``, or a given ``alpha``;
  pandas ``ewm(span=..., adjust=False)``. Seeded with the first value, so there is no warm-up NaN.
- Wilder smoothing (RSI, ATR): the same recursion with ``a = 1 / n``, pandas ``ewm(alpha=1/n, adjust=False)``.
  It starts from the first value rather than Wilder's simple mean of the first n: the two differ by a factor
  ``(1 - 1/n)^k`` after k bars, below 1e-12 relative after about 400 bars for n = 14.
- RSI(n): smoothed gains over smoothed gains + losses of close-to-close changes, times 100. NaN for the first n
  bars (n changes are needed). 100 when there were only gains, 0 only losses, 50 when the price never moved.
- MACD(12, 26, 9): line = EMA12 - EMA26, signal = EMA9 of the line, histogram = line - signal. No warm-up NaN
  (its EMAs have none); early values lean on the first close.
- True range: ``max(high - low, |high - prev close|, |low - prev close|)``; the first bar's is ``high - low``.
  ATR(n) is its Wilder smoothing, NaN for the first n - 1 bars.
- VWAP: typical price ``(high + low + close) / 3`` weighted by volume, cumulative from the first bar given, or
  over the last ``window`` bars (fewer while fewer exist), or anchored at session starts (``session_vwap``,
  UTC days by default). NaN where the bars it covers have no volume. Window sums are formed block-wise
  (``rolling_sum``), never as differences of one running sum, which would lose a small window's digits.
- Bollinger(n, k): middle = SMA(n), bands = middle ± k·stdev with the **population** stdev (``ddof=0``, as
  Bollinger defines it and as most charting packages draw it; pass ``ddof=1`` for the sample stdev). NaN for
  the first n - 1 bars.

Inputs must be finite. The EMA recursion is solved in blocks: inside a block of 64 bars by one matrix product
with the powers of ``1 - a``, across blocks by the same recursion on the block ends (recursively), so there is no
Python loop over bars; an EMA of 100k bars takes about a millisecond. Bollinger sums over the n positions of
the window (a loop of n vector operations). ``ema_last`` gives the newest EMA value alone as one dot product,
which is what ``features.compute_state`` uses on its bounded tail. The incremental states cover the
cumulative and the rolling VWAP; the session-anchored one is vectorised only.
"""

from __future__ import annotations

import math
from collections import deque
from functools import lru_cache
from typing import NamedTuple

import numpy as np

__all__ = [
    "AtrState",
    "Bands",
    "BandsValue",
    "BollingerState",
    "EmaState",
    "Macd",
    "MacdState",
    "MacdValue",
    "RsiState",
    "VwapState",
    "atr",
    "bollinger",
    "ema",
    "ema_alpha",
    "ema_last",
    "linear_recurrence",
    "macd",
    "rolling_sum",
    "rsi",
    "session_vwap",
    "true_range",
    "vwap",
    "wilder",
]

_BLOCK = 64  # bars per block of the blocked recursion: a 64x64 matrix product per 64 bars


# ------------------------------------------------------------------------------------------ recursion core


def ema_alpha(span: float | None = None, alpha: float | None = None) -> float:
    """The smoothing factor: ``2 / (span + 1)`` from a span (>= 1), or ``alpha`` itself (0 < alpha <= 1)."""
    if (span is None) == (alpha is None):
        raise ValueError("give exactly one of span and alpha")
    if span is not None:
        if not span >= 1:
            raise ValueError(f"span must be at least 1, got {span}")
        return 2.0 / (span + 1.0)
    assert alpha is not None
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    return float(alpha)


@lru_cache(maxsize=32)
def _block_matrix(b: float) -> np.ndarray:
    """``T[j, i] = b ** (i - j)`` for ``i >= j`` else 0: row-vector @ T runs the recursion inside one block."""
    k = np.arange(_BLOCK)
    lag = k[None, :] - k[:, None]
    t = np.where(lag >= 0, b ** np.maximum(lag, 0).astype(np.float64), 0.0)
    t.flags.writeable = False
    return t


@lru_cache(maxsize=32)
def _carry_powers(b: float) -> np.ndarray:
    """``b ** (i + 1)`` for i in a block: how much of the previous block's end reaches position i."""
    p = b ** np.arange(1, _BLOCK + 1, dtype=np.float64)
    p.flags.writeable = False
    return p


def linear_recurrence(u: np.ndarray, b: float, y0: float = 0.0) -> np.ndarray:
    """``y[i] = b * y[i-1] + u[i]`` with ``y[-1] = y0``, for ``0 <= b <= 1``, without a loop over elements."""
    u = np.asarray(u, dtype=np.float64)
    n = u.size
    if n == 0:
        return np.empty(0, np.float64)
    m = -(-n // _BLOCK)
    blocks = np.zeros((m, _BLOCK), np.float64)
    blocks.ravel()[:n] = u
    local = blocks @ _block_matrix(b)  # each block as if it started from zero
    # The end of each block: y_end[k] = local_end[k] + b^BLOCK * y_end[k-1], the same recursion, m times shorter.
    if m > 1:
        ends = linear_recurrence(local[:, -1], b**_BLOCK, y0)
        prev = np.concatenate(([y0], ends[:-1]))
    else:
        prev = np.array([y0])
    local += prev[:, None] * _carry_powers(b)[None, :]
    return local.ravel()[:n]


def ema(x: np.ndarray, span: float | None = None, *, alpha: float | None = None) -> np.ndarray:
    """Exponential moving average, pandas ``ewm(span=span, adjust=False)`` (or ``alpha=``). No warm-up NaN."""
    a = ema_alpha(span, alpha)
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.size, np.float64)
    if x.size == 0:
        return out
    # Solved for the offsets from the first value: a constant stays exactly constant, and the rounding scales
    # with how far the input moves rather than with its level.
    x0 = float(x[0])
    out[0] = x0
    out[1:] = linear_recurrence(a * (x[1:] - x0), 1.0 - a, 0.0)
    out[1:] += x0
    return out


def wilder(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder's smoothing over n bars: the EMA with ``alpha = 1/n``, seeded with the first value."""
    return ema(x, alpha=1.0 / _period(n))


@lru_cache(maxsize=64)
def _last_weights(a: float, n: int) -> np.ndarray:
    """Weights w with ``w @ x == ema(x, alpha=a)[-1]`` for len(x) == n: ``(1-a)^(n-1)`` on x[0], then
    ``a (1-a)^(n-1-k)`` on x[k]."""
    b = 1.0 - a
    w = a * b ** np.arange(n - 1, -1, -1, dtype=np.float64)
    w[0] = b ** (n - 1)
    w.flags.writeable = False
    return w


def ema_last(x: np.ndarray, span: float | None = None, *, alpha: float | None = None) -> float:
    """``ema(x, ...)[-1]`` as one dot product: the value at the newest bar, without the whole series."""
    a = ema_alpha(span, alpha)
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise ValueError("ema_last of an empty array")
    x0 = float(x[0])
    return x0 + float(_last_weights(a, x.size)[1:] @ (x[1:] - x0))  # offsets from x[0], as ``ema``


def _period(n: int) -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"period must be a positive integer, got {n}")
    return int(n)


# --------------------------------------------------------------------------------------------- vectorised


def _rsi_value(avg_gain: np.ndarray | float, avg_loss: np.ndarray | float) -> np.ndarray:
    total = np.asarray(avg_gain + avg_loss, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0.0, 100.0 * avg_gain / total, 50.0)


def rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    """Relative strength index with Wilder's smoothing; NaN for the first n bars."""
    n = _period(n)
    c = np.asarray(close, dtype=np.float64)
    out = np.full(c.size, np.nan)
    if c.size < 2:
        return out
    d = np.diff(c)
    out[1:] = _rsi_value(wilder(np.maximum(d, 0.0), n), wilder(np.maximum(-d, 0.0), n))
    out[:n] = np.nan
    return out


class Macd(NamedTuple):
    line: np.ndarray
    signal: np.ndarray
    histogram: np.ndarray


def macd(close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> Macd:
    """MACD line (EMA fast - EMA slow), its signal (EMA of the line) and the histogram (line - signal)."""
    c = np.asarray(close, dtype=np.float64)
    line = ema(c, _period(fast)) - ema(c, _period(slow))
    sig = ema(line, _period(signal))
    return Macd(line, sig, line - sig)


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Per-bar true range; the first bar has no previous close, so its range is ``high - low``."""
    h, lo, c = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    tr = h - lo
    if tr.size > 1:
        prev = c[:-1]
        tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(h[1:] - prev), np.abs(lo[1:] - prev)))
    return tr


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    """Average true range with Wilder's smoothing; NaN for the first n - 1 bars."""
    n = _period(n)
    out = wilder(true_range(high, low, close), n)
    out[: n - 1] = np.nan
    return out


def _typical_pv(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray) -> tuple[np.ndarray, ...]:
    h, lo, c, v = (np.asarray(a, dtype=np.float64) for a in (high, low, close, volume))
    return (h + lo + c) / 3.0 * v, v


def _ratio_or_nan(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0.0, num / den, np.nan)


def rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Sums over the last ``window`` elements (fewer while fewer exist), accurate to the window's own magnitude.

    Differences of one running sum would lose the digits of a small window after a large history (a bar with a
    tiny volume after years of bars). Instead the array is cut into blocks of ``window``: a window ending at
    position j of a block is the block's prefix up to j plus the previous block's suffix from j + 1, both sums
    of at most ``window`` elements.
    """
    w = _period(window)
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    out = np.cumsum(x)  # the first window: every element so far
    if w >= n:
        return out
    m = -(-n // w)
    blocks = np.zeros((m, w), np.float64)
    blocks.ravel()[:n] = x
    prefix = np.cumsum(blocks, axis=1)
    suffix = np.cumsum(blocks[:, ::-1], axis=1)[:, ::-1]
    later = prefix[1:]
    later[:, :-1] += suffix[:-1, 1:]
    out[w:] = later.ravel()[: n - w]
    return out


def vwap(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, window: int | None = None
) -> np.ndarray:
    """Volume-weighted typical price: cumulative from the first bar, or over the last ``window`` bars.

    The rolling form covers every bar so far until ``window`` exist (pandas ``rolling(window, min_periods=1)``).
    NaN where the bars covered have no volume.
    """
    pv, v = _typical_pv(high, low, close, volume)
    if window is None:
        return _ratio_or_nan(np.cumsum(pv), np.cumsum(v))
    return _ratio_or_nan(rolling_sum(pv, window), rolling_sum(v, window))


def session_vwap(
    open_ms: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    session_ms: int = 86_400_000,
) -> np.ndarray:
    """VWAP anchored at every session start: it restarts at each multiple of ``session_ms`` (UTC days)."""
    pv, v = _typical_pv(high, low, close, volume)
    session = np.asarray(open_ms, dtype=np.int64) // int(session_ms)
    cpv, cv = np.empty_like(pv), np.empty_like(v)
    bounds = np.flatnonzero(session[1:] != session[:-1]) + 1
    # One cumsum per session (a loop over sessions, not bars): differences of a single running sum would lose
    # the digits of a session's first bars after a long history.
    for a, b in zip(np.concatenate(([0], bounds)).tolist(), np.append(bounds, session.size).tolist(), strict=True):
        np.cumsum(pv[a:b], out=cpv[a:b])
        np.cumsum(v[a:b], out=cv[a:b])
    return _ratio_or_nan(cpv, cv)


class Bands(NamedTuple):
    middle: np.ndarray
    upper: np.ndarray
    lower: np.ndarray


def _mean_std(s1: np.ndarray | float, s2: np.ndarray | float, n: int, ddof: int) -> tuple:
    """Mean offset and stdev of n values from the sums of their offsets ``d`` from a reference and of ``d**2``.

    The reference is the window's newest value, so offsets are small and exact (floats within a factor of two
    subtract without error): no cancellation against the price level, and a flat window has a stdev of exactly 0.
    """
    m = s1 / n
    var = np.maximum((s2 - s1 * m) / (n - ddof), 0.0)
    return m, np.sqrt(var)


def bollinger(close: np.ndarray, n: int = 20, k: float = 2.0, ddof: int = 0) -> Bands:
    """SMA(n) ± k·stdev over the last n closes (population stdev by default); NaN for the first n - 1 bars."""
    n = _period(n)
    if ddof not in (0, 1) or n - ddof < 1:
        raise ValueError("ddof must be 0 or 1 (and below n)")
    c = np.asarray(close, dtype=np.float64)
    mid = np.full(c.size, np.nan)
    sd = np.full(c.size, np.nan)
    if c.size >= n:
        count = c.size - n + 1
        ref = c[n - 1 :]
        s1 = np.zeros(count)
        s2 = np.zeros(count)
        for j in range(n):  # a loop over the window's positions (n of them), not over bars
            d = c[j : j + count] - ref
            s1 += d
            s2 += d * d
        m, sd[n - 1 :] = _mean_std(s1, s2, n, ddof)
        mid[n - 1 :] = ref + m
    return Bands(mid, mid + k * sd, mid - k * sd)


# -------------------------------------------------------------------------------------------- incremental


class EmaState:
    """EMA of one input, advanced per closed bar; ``peek`` gives the forming bar's value."""

    __slots__ = ("_a", "count", "value")

    def __init__(self, span: float | None = None, *, alpha: float | None = None) -> None:
        self._a = ema_alpha(span, alpha)
        self.count = 0  # inputs seen
        self.value = math.nan  # after the last update

    def peek(self, x: float) -> float:
        return x if self.count == 0 else self.value + self._a * (x - self.value)

    def update(self, x: float) -> float:
        self.value = self.peek(x)
        self.count += 1
        return self.value

    @classmethod
    def from_history(cls, x: np.ndarray, span: float | None = None, *, alpha: float | None = None) -> EmaState:
        s = cls(span, alpha=alpha)
        x = np.asarray(x, dtype=np.float64)
        if x.size:
            s.value, s.count = ema_last(x, alpha=s._a), int(x.size)
        return s


class RsiState:
    """RSI(n) over closes; NaN until n changes have been seen."""

    __slots__ = ("_gain", "_loss", "n", "prev_close")

    def __init__(self, n: int = 14) -> None:
        self.n = _period(n)
        self._gain = EmaState(alpha=1.0 / self.n)
        self._loss = EmaState(alpha=1.0 / self.n)
        self.prev_close = math.nan

    def _value(self, gain: float, loss: float, changes: int) -> float:
        if changes < self.n:
            return math.nan
        total = gain + loss
        return 100.0 * gain / total if total > 0.0 else 50.0

    def peek(self, close: float) -> float:
        if math.isnan(self.prev_close):
            return math.nan
        d = close - self.prev_close
        return self._value(self._gain.peek(max(d, 0.0)), self._loss.peek(max(-d, 0.0)), self._gain.count + 1)

    def update(self, close: float) -> float:
        if math.isnan(self.prev_close):
            self.prev_close = close
            return math.nan
        d = close - self.prev_close
        self.prev_close = close
        return self._value(self._gain.update(max(d, 0.0)), self._loss.update(max(-d, 0.0)), self._gain.count)

    @classmethod
    def from_history(cls, close: np.ndarray, n: int = 14) -> RsiState:
        s = cls(n)
        c = np.asarray(close, dtype=np.float64)
        if c.size:
            s.prev_close = float(c[-1])
            d = np.diff(c)
            s._gain = EmaState.from_history(np.maximum(d, 0.0), alpha=1.0 / s.n)
            s._loss = EmaState.from_history(np.maximum(-d, 0.0), alpha=1.0 / s.n)
        return s


class MacdValue(NamedTuple):
    line: float
    signal: float
    histogram: float


class MacdState:
    """MACD(fast, slow, signal) over closes."""

    __slots__ = ("_fast", "_signal", "_slow")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self._fast = EmaState(_period(fast))
        self._slow = EmaState(_period(slow))
        self._signal = EmaState(_period(signal))

    def peek(self, close: float) -> MacdValue:
        line = self._fast.peek(close) - self._slow.peek(close)
        sig = self._signal.peek(line)
        return MacdValue(line, sig, line - sig)

    def update(self, close: float) -> MacdValue:
        line = self._fast.update(close) - self._slow.update(close)
        sig = self._signal.update(line)
        return MacdValue(line, sig, line - sig)

    @classmethod
    def from_history(cls, close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> MacdState:
        s = cls(fast, slow, signal)
        c = np.asarray(close, dtype=np.float64)
        if c.size:
            m = macd(c, fast, slow, signal)
            s._fast = EmaState.from_history(c, fast)
            s._slow = EmaState.from_history(c, slow)
            s._signal = EmaState.from_history(m.line, signal)
        return s


class AtrState:
    """ATR(n) over bars; NaN until n bars have been seen."""

    __slots__ = ("_tr", "n", "prev_close")

    def __init__(self, n: int = 14) -> None:
        self.n = _period(n)
        self._tr = EmaState(alpha=1.0 / self.n)
        self.prev_close = math.nan

    def _true_range(self, high: float, low: float) -> float:
        if math.isnan(self.prev_close):
            return high - low
        return max(high - low, abs(high - self.prev_close), abs(low - self.prev_close))

    def peek(self, high: float, low: float, close: float) -> float:
        value = self._tr.peek(self._true_range(high, low))
        return value if self._tr.count + 1 >= self.n else math.nan

    def update(self, high: float, low: float, close: float) -> float:
        value = self._tr.update(self._true_range(high, low))
        self.prev_close = close
        return value if self._tr.count >= self.n else math.nan

    @classmethod
    def from_history(cls, high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> AtrState:
        s = cls(n)
        c = np.asarray(close, dtype=np.float64)
        if c.size:
            s._tr = EmaState.from_history(true_range(high, low, c), alpha=1.0 / s.n)
            s.prev_close = float(c[-1])
        return s


class VwapState:
    """VWAP, cumulative (``window=None``) or over the last ``window`` bars.

    It forms its sums exactly as the vectorised ``vwap`` does (running sums; for a window, the prefix of the
    current block of ``window`` bars plus the suffix of the previous one, see ``rolling_sum``), so its values
    are the vectorised ones bit for bit. Each update is O(1), and O(window) once per ``window`` bars.
    """

    __slots__ = ("_block", "_n", "_pv", "_suffix", "_v", "window")

    def __init__(self, window: int | None = None) -> None:
        self.window = None if window is None else _period(window)
        self._n = 0  # closed bars seen
        self._pv = 0.0  # sums of the closed bars: all of them, or those of the current block
        self._v = 0.0
        self._block: list[tuple[float, float]] = []  # the current block's closed bars (pv, v)
        self._suffix: list[tuple[float, float]] | None = None  # the previous block's suffix sums

    def _value(self, pv: float, v: float) -> float:
        """VWAP of the new bar from the sums that include it."""
        if self.window is not None and self._suffix is not None:
            j = self._n % self.window
            if j + 1 < self.window:
                spv, sv = self._suffix[j + 1]
                pv, v = pv + spv, v + sv
        return pv / v if v > 0.0 else math.nan

    def peek(self, high: float, low: float, close: float, volume: float) -> float:
        return self._value(self._pv + (high + low + close) / 3.0 * volume, self._v + volume)

    def update(self, high: float, low: float, close: float, volume: float) -> float:
        pv = (high + low + close) / 3.0 * volume
        value = self._value(self._pv + pv, self._v + volume)
        self._pv += pv
        self._v += volume
        self._n += 1
        if self.window is not None:
            self._block.append((pv, volume))
            if self._n % self.window == 0:
                self._close_block()
        return value

    def _close_block(self) -> None:
        spv = sv = 0.0
        suffix = []
        for pv, v in reversed(self._block):  # the same order as np.cumsum over the reversed block
            spv += pv
            sv += v
            suffix.append((spv, sv))
        suffix.reverse()
        self._suffix = suffix
        self._block = []
        self._pv = self._v = 0.0

    @classmethod
    def from_history(
        cls, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, window: int | None = None
    ) -> VwapState:
        s = cls(window)
        pv, v = _typical_pv(high, low, close, volume)
        n = v.size
        s._n = n
        if s.window is None:
            s._pv, s._v = (float(np.cumsum(col)[-1]) if n else 0.0 for col in (pv, v))
            return s
        start = n - n % s.window  # the current block's first bar
        if start:
            s._block = list(
                zip(pv[start - s.window : start].tolist(), v[start - s.window : start].tolist(), strict=True)
            )
            s._close_block()
        s._block = list(zip(pv[start:].tolist(), v[start:].tolist(), strict=True))
        if s._block:
            s._pv, s._v = float(np.cumsum(pv[start:])[-1]), float(np.cumsum(v[start:])[-1])
        return s


class BandsValue(NamedTuple):
    middle: float
    upper: float
    lower: float


class BollingerState:
    """Bollinger bands over the last n closes (n is fixed, so each value is O(1) in the history length)."""

    __slots__ = ("_closes", "ddof", "k", "n")

    def __init__(self, n: int = 20, k: float = 2.0, ddof: int = 0) -> None:
        self.n = _period(n)
        if ddof not in (0, 1) or self.n - ddof < 1:
            raise ValueError("ddof must be 0 or 1 (and below n)")
        self.k = k
        self.ddof = ddof
        self._closes: deque[float] = deque(maxlen=self.n - 1 if self.n > 1 else 0)  # closed bars before the next

    def _value(self, close: float) -> BandsValue:
        if len(self._closes) < self.n - 1:
            return BandsValue(math.nan, math.nan, math.nan)
        s1 = s2 = 0.0
        for x in self._closes:  # the same sums in the same order as the vectorised form
            d = x - close
            s1 += d
            s2 += d * d
        m, sd = _mean_std(s1, s2, self.n, self.ddof)
        mid = close + float(m)
        s = float(sd)
        return BandsValue(mid, mid + self.k * s, mid - self.k * s)

    def peek(self, close: float) -> BandsValue:
        return self._value(close)

    def update(self, close: float) -> BandsValue:
        value = self._value(close)
        if self.n > 1:
            self._closes.append(close)
        return value

    @classmethod
    def from_history(cls, close: np.ndarray, n: int = 20, k: float = 2.0, ddof: int = 0) -> BollingerState:
        s = cls(n, k, ddof)
        if s.n > 1:
            s._closes.extend(np.asarray(close, dtype=np.float64)[-(s.n - 1) :].tolist())
        return s
