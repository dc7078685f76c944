"""The built-in exchange's last price sits at the touch: a trader reading the status bar's last price beside the
order book's best bid and ask must not see a last trade a few ticks below the bid for seconds on end (on a recorded
Binance BTCUSDT session the last price is outside the touch 3.8 % of the time)."""

from __future__ import annotations

from app.market.adapters import binance
from app.market.sim.markets import market_for
from app.models import Quote, Trade

START_MS = 1_780_000_000_000  # fixed: the market is a function of the clock


def share_outside_touch(symbol: str, trades_per_s: float, seconds: int = 120) -> float:
    market = market_for(symbol, trades_per_s, seed=1, start_ms=START_MS)
    wanted = {f"{symbol.lower()}@trade", f"{symbol.lower()}@bookTicker"}
    last = quote = None
    samples = outside = 0
    for k in range(1, seconds * 40 + 1):  # the server's 25 ms step
        for _, payload in market.advance(START_MS + 25 * k, wanted):
            for event in binance.parse(payload, 0):
                if isinstance(event, Trade):
                    last = event.price
                elif isinstance(event, Quote):
                    quote = event
        if last is None or quote is None:
            continue
        samples += 1
        outside += last < quote.bid or last > quote.ask
    assert samples > seconds * 30, "the market traded and quoted"
    return outside / samples


def test_the_last_price_stays_at_or_inside_the_touch_between_trades():
    for symbol, rate in (("BTCUSDT", 20), ("ETHUSDT", 20), ("BTCUSDT", 200)):
        assert share_outside_touch(symbol, rate) < 0.05, (symbol, rate)
