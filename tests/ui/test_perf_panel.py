"""The performance panel after a short run on the built-in exchange: stages filled, thresholds, export."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest

from app.config import Settings
from app.perf.metrics import StageSnapshot, load_json
from app.session import LOOP_LAG, Session
from app.ui import perf_panel
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow
from app.ui.perf_panel import ROWS, PerfPanel
from tests.conftest import wait_until


@pytest.mark.asyncio
async def test_panel_shows_stage_percentiles_flags_a_stall_and_exports(qtbot, tmp_path):
    session = Session(Settings(sim_trades_per_s=80.0, history_bars=20, journal_path=tmp_path / "j.sqlite3"))
    await session.start()
    window = MainWindow(session, BufferingHandler())
    window.show()
    window.bridge.start()
    try:
        await wait_until(lambda: session.feed.frames > 200, timeout=15, what="a couple of hundred frames")
        # Live events wait in the bus until history has loaded: wait until the market task has applied some.
        await wait_until(lambda: session.market["BTCUSDT"].trades > 0, timeout=15, what="trades applied")
        time.sleep(0.08)  # a deliberate stall of the loop: the lag probe must see it
        await wait_until(lambda: session.metrics.recorder(LOOP_LAG).snapshot("1m").max >= 60_000_000,
                         timeout=5, what="the stall measured as loop lag")
        panel = window.perf_panel
        panel.refresh(window.symbol, window.chart.timeframe, 60.0)  # past the start-up grace period
        values = {ROWS[i]: panel.table.item(i, 3).text() for i in range(len(ROWS))}  # p99 column
        for stage in ("receive_to_bus", "candle_update", "ui_frame", "exchange_to_receive", LOOP_LAG):
            assert values[stage] not in ("—", ""), stage
        assert any("loop lag" in b for b in panel.breaches)  # an 80 ms stall is over the 5 ms threshold
        # The panel colours the stage; the status bar's SLOW badge waits for a sustained slowness (one stall in
        # one p99 window is not one: app/view/status.py SlowWatch, tested with a stated time series).
        assert window.perf_badge.isHidden()
        json_path, csv_path = panel.export_snapshot()
        snap = load_json(json_path)
        assert snap["stages"]["receive_to_bus"]["all"].count > 0
        assert csv_path.read_text().startswith("kind,name,window")
    finally:
        window.close()
        window.deleteLater()
        await session.stop()


class _Stage:
    def __init__(self) -> None:
        self.snap = StageSnapshot()

    def snapshot(self, window: str) -> StageSnapshot:
        return self.snap


def test_a_threshold_crossing_is_logged_once_when_it_starts_and_once_when_it_ends(qtbot, caplog, monkeypatch):
    stages = {name: _Stage() for name in ROWS}
    session = SimpleNamespace(settings=SimpleNamespace(perf_thresholds_ms={LOOP_LAG: 5.0}),
                              metrics=SimpleNamespace(recorder=lambda name: stages[name]))
    panel = PerfPanel(session)  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    clock = [1000.0]
    monkeypatch.setattr(perf_panel.time, "monotonic", lambda: clock[0])
    lag = stages[LOOP_LAG]

    def refresh(p99_ms: float, minutes: float = 0.5) -> None:
        lag.snap = StageSnapshot(count=100, p50=1_000_000, p95=2_000_000, p99=int(p99_ms * 1e6), max=int(p99_ms * 1e6))
        clock[0] += minutes * 60
        panel._refresh_stages(60.0)

    def records(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == perf_panel.log.name and r.levelno == level]

    with caplog.at_level(logging.INFO, logger=perf_panel.log.name):
        for _ in range(10):  # five minutes over the threshold: one episode, one warning
            refresh(7.0)
        assert len(records(logging.WARNING)) == 1 and "loop_lag" in records(logging.WARNING)[0]
        refresh(2.0)  # back under, but a p99 near its line flaps: the end is said after a calm minute
        refresh(8.0)
        refresh(2.0)
        assert not [m for m in records(logging.INFO) if "loop_lag" in m]
        assert len(records(logging.WARNING)) == 1
        refresh(2.0)
        refresh(2.0)  # under for a minute: said once, with how long it lasted
        refresh(2.0)
        ended = [m for m in records(logging.INFO) if "loop_lag" in m]
        assert len(ended) == 1 and "back under" in ended[0] and "6.0 min" in ended[0] and "8 ms" in ended[0]
        refresh(9.0)  # a new episode: a new warning
        assert len(records(logging.WARNING)) == 2
        assert panel.breaches  # the panel still shows the breach at every refresh
