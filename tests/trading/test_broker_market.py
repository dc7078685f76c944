"""The session feeds market data to whichever broker it runs, on the broker's own bus subscription and supervised
task named for the mode: the paper broker fills on it, the live broker watches the take-profits it holds. The
built-in exchange in-process (its trading API on loopback for live), real ccxt."""

from __future__ import annotations

import contextlib

import pytest

from app.config import Settings
from app.models import Quote, Trade
from app.session import Session
from app.trading.broker import Broker
from app.trading.live_start import open_live
from tests.conftest import wait_until

SYMBOL = "BTCUSDT"


async def yes(_account, _label) -> bool:
    return True


@contextlib.asynccontextmanager
async def session_in(tmp_path, live: bool):
    s = Settings(symbols=[SYMBOL], sim_process=False, sim_trades_per_s=100.0, history_bars=0,
                 journal_path=tmp_path / "journal.sqlite3", live_trading=live, decision_source="rules")
    start = await open_live(s, yes) if live else None
    session = Session(s, live=start)
    seen: list[object] = []
    broker = session.desk.broker
    take = broker.on_market

    def on_market(batch):  # what the session hands the broker, then the broker's own handling
        seen.extend(batch)
        take(batch)

    broker.on_market = on_market  # type: ignore[method-assign]
    try:
        await session.start()
        yield session, seen
    finally:
        await session.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("live", [False, True], ids=["paper", "live"])
async def test_the_broker_gets_trades_and_quotes_on_its_own_supervised_task(tmp_path, live):
    async with session_in(tmp_path, live) as (session, seen):
        broker = session.desk.broker
        assert isinstance(broker, Broker) and broker.mode == ("LIVE" if live else "PAPER")
        names = {t.get_name() for t in session.supervisor.tasks}
        assert ("live broker" if live else "paper broker") in names
        assert ("paper broker" if live else "live broker") not in names
        await wait_until(lambda: any(isinstance(e, Trade) for e in seen) and any(isinstance(e, Quote) for e in seen),
                         timeout=15, what="trades and quotes for the broker")
        assert all(isinstance(e, Trade | Quote) for e in seen)  # its share only: books are shared by reference
