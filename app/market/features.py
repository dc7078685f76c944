"""MarketState: the numbers a decision is made from, and nothing else.

The prompt is built only from it and the decision cache keys on it, so what the model sees and what the cache
compares are the same thing. Prices and levels are float64 market data; the scale-free features (returns, spreads
in %, RSI, ratios) are what similarity is judged on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class PositionState(StrEnum):
    FLAT = "FLAT"
    LONG = "LONG"
    SHORT = "SHORT"


# Scale-free features, in a fixed order: these feed the cache key and the prompt's numbers.
FEATURE_NAMES: tuple[str, ...] = (
    "ret_1",  # % return over the last 1 bar of the decision timeframe
    "ret_5",  # % over 5 bars
    "ret_15",  # % over 15 bars
    "ret_60",  # % over 60 bars
    "ema_spread_pct",  # (EMA fast - EMA slow) / EMA slow, %
    "rsi",  # RSI(14), 0..100
    "atr_pct",  # ATR(14) / last price, %
    "vwap_dist_pct",  # (last - VWAP) / VWAP, %
    "volume_ratio",  # last closed bar's volume / mean of the previous 20
    "spread_bps",  # (ask - bid) / mid, basis points
)


@dataclass(frozen=True, slots=True)
class MarketState:
    symbol: str
    timeframe: str
    exchange_ms: int  # exchange time the state describes (the close of the last bar used)
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
    position: PositionState = PositionState.FLAT
    position_pnl_sign: int = 0  # -1 losing, 0 flat or even, +1 winning

    def features(self) -> tuple[float, ...]:
        """The scale-free features in FEATURE_NAMES order."""
        return tuple(getattr(self, name) for name in FEATURE_NAMES)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
