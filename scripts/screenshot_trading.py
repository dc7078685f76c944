#!/usr/bin/env python3
"""Render the terminal with an open position to a PNG (docs/screenshot-trading.png): the real window on the
built-in exchange, a market order with a stop-loss / take-profit bracket sent through the desk (risk, paper broker,
journal), a working limit order below the market, and a pending model proposal waiting for the trader.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshot_trading.py [PATH] [--size 1600x1000]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("QT_API", "pyside6")
import qasync
from PySide6 import QtWidgets

from app.config import Settings
from app.llm import prompt
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.models import OrderOrigin, OrderRequest, OrderType, Side
from app.session import Session
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow, apply_theme

ROOT = Path(__file__).resolve().parents[1]


class DemoModel:
    """Stands in for a model so the picture shows a pending proposal with a MISS badge."""

    name, model, prompt_version = "demo", "demo-model", prompt.PROMPT_VERSION

    async def decide(self, state):
        body = DecisionBody(action=Action.BUY, size_pct=4.0, stop_loss_pct=0.6, take_profit_pct=1.2,
                            confidence=0.72, rationale="Trend up: EMA spread +1.4 ATR, price above VWAP, RSI 61.")
        meta = DecisionMeta(provider="demo", model=self.model, prompt_version=self.prompt_version, latency_ms=3120.0,
                            prompt_tokens=612, completion_tokens=74, cache_status=CacheStatus.MISS)
        return Decision.about(state, body, meta)

    async def aclose(self):
        pass


async def until(cond, timeout=20.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise TimeoutError("the terminal did not reach the state to photograph")
        await asyncio.sleep(0.05)


async def main(out: Path, size: tuple[int, int]) -> int:
    journal = Path(tempfile.mkdtemp()) / "journal.sqlite3"
    session = Session(Settings(journal_path=journal, sim_trades_per_s=40.0, decision_timeframe="1m"))
    window = MainWindow(session, BufferingHandler())
    window.resize(*size)
    window.show()
    await session.start()
    window.bridge.start()
    desk = session.desk
    await until(lambda: desk.last_price("BTCUSDT") is not None and desk.books["BTCUSDT"].has_snapshot)
    result = await desk.submit_manual(OrderRequest(
        "BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.05"), origin=OrderOrigin.MANUAL,
        stop_loss_pct=Decimal("0.5"), take_profit_pct=Decimal("0.8")))
    print(result.message)
    await until(lambda: desk.portfolio.position("BTCUSDT").qty > 0 and all(desk.bracket_levels("BTCUSDT")))
    below = (desk.last_price("BTCUSDT") * Decimal("0.997")).quantize(Decimal("0.01"))
    print((await desk.submit_manual(OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.02"),
                                                 limit_price=below, origin=OrderOrigin.MANUAL))).message)
    session.decisions.provider = DemoModel()
    await session.decisions.ask_now("BTCUSDT")
    await asyncio.sleep(3.0)  # let marks move and the countdown run a little
    window.bridge.tick()
    window.refresh_slow(window.bridge.message_rate())
    ok = window.grab().save(str(out), "PNG")
    window.bridge.stop()
    await session.stop()
    window.hide()
    print(f"{'wrote' if ok else 'could not write'} {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    size = (1600, 1000)
    if "--size" in args:
        i = args.index("--size")
        w, h = args[i + 1].lower().split("x")
        size = (int(w), int(h))
        del args[i:i + 2]
    target = Path(args[0]) if args else ROOT / "docs" / "screenshot-trading.png"
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    apply_theme(app, "dark")
    sys.exit(qasync.run(main(target, size)))
