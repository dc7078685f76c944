"""The performance panel hands the SLOW badge the loop lag the terminal's own work can have made, not the time its
thread was not running (a real window on a busy machine showed the badge all the time for that)."""

from __future__ import annotations

from types import SimpleNamespace

from app.perf import probes
from app.perf.metrics import Recorder
from app.session import LOOP_LAG
from app.ui.perf_panel import ROWS, SPLIT_ROWS, PerfPanel


def test_the_badge_sees_the_on_cpu_part_of_the_loop_lag_and_the_table_shows_both(qtbot):
    recorders = {name: Recorder(name) for name in ROWS}
    probe = probes.LoopLagProbe(recorders[LOOP_LAG])
    for _ in range(1000):  # a starved loop: 80 ms late each time, 2 ms of it on the CPU
        probe.recorder.record(80_000_000)
        probe.own.record(2_000_000)
        probe.off_cpu.record(78_000_000)
    session = SimpleNamespace(settings=SimpleNamespace(perf_thresholds_ms={LOOP_LAG: 5.0}),
                              metrics=SimpleNamespace(recorder=recorders.__getitem__), loop_lag=probe)
    panel = PerfPanel(session)  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    panel._refresh_stages(60.0)
    panel._refresh_table()
    badge = panel.badge_p99_ns()
    assert 1_900_000 <= badge[LOOP_LAG] <= 2_100_000  # under any SLOW limit: the terminal is not what is slow
    rows = {panel.table.item(i, 0).text(): panel.table.item(i, 3).text() for i in range(panel.table.rowCount())}
    assert rows["loop lag, on CPU"].startswith("2") and rows["loop lag, off CPU"].startswith("78")
    assert len(rows) == len(ROWS) + len(SPLIT_ROWS)
    assert panel.breaches and "loop lag" in panel.breaches[0]  # the panel still says the loop was late
