#!/usr/bin/env python3
"""Start-up time to the first window shown, warm and cold, beside a bare PySide6 + pyqtgraph window.

Each run is a fresh process, offscreen; the time is from the process's creation (as the OS records it) to the
window being shown and its first events processed. "Cold" drops the OS page cache before each run (needs root;
otherwise reported as unavailable) so libraries are read from disk again. Medians over --runs. The targets take
turns (baseline, terminal, packaged, baseline, ...): on a shared machine the load drifts, and a ratio means
something only when both sides ran under the same load.

The terminal is measured from source (``python -m app``) and, when it has been built (./scripts/build), as the
packaged executable (``--exe``, default dist/trading-terminal/trading-terminal), in the same run. Every run's
settings, journal and logs go to one temporary directory (XDG_* point there), not to the home directory.

    .venv/bin/python scripts/bench_startup.py [--runs 7] [--exe PATH | --no-exe] [--json]

``--json`` prints one object: medians in seconds (``baseline_warm_s``, ``terminal_warm_s``, ``packaged_warm_s``,
the same for cold) and the ratios to the bare window: ``warm_ratio``, ``warm_packaged_ratio``, ``cold_ratio``,
``cold_packaged_ratio`` (None when not measured; ``ratio_warm`` and ``packaged_ratio_warm`` are older names).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXE = ROOT / "dist" / "trading-terminal" / "trading-terminal"
XDG_DIRS = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")
_home = tempfile.TemporaryDirectory(prefix="bench-startup-")

BASELINE = r"""
import time, psutil
from PySide6 import QtWidgets
import pyqtgraph as pg
app = QtWidgets.QApplication([])
w = QtWidgets.QMainWindow()
w.setCentralWidget(pg.PlotWidget())
w.resize(1440, 900)
w.show()
QtWidgets.QApplication.processEvents()
print(f"first_window_s={time.time() - psutil.Process().create_time():.4f}", flush=True)
print(f"first_window_cpu_s={time.process_time():.4f}", flush=True)
"""


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def run_once(cmd: list[str], cwd: Path = ROOT, clock: str = "wall") -> float:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    # A trader's machine caches bytecode after the first run (pip did so for PySide6 and pyqtgraph at install);
    # PYTHONDONTWRITEBYTECODE in the caller's environment would make every run compile the app's sources again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update({name: str(Path(_home.name) / name.lower()) for name in XDG_DIRS})
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    key = "first_window_s=" if clock == "wall" else "first_window_cpu_s="
    for line in proc.stdout.splitlines():
        if line.startswith(key):
            return float(line.split("=", 1)[1])
    raise RuntimeError(f"{cmd} printed no start-up time (exit {proc.returncode}): {proc.stderr[-500:]}")


def measure(targets: dict[str, tuple[list[str], Path]], runs: int, cold: bool,
            clock: str = "wall") -> dict[str, list[float]]:
    """``runs`` samples per target, the targets in turn (one run each, then again), so that a change in the
    machine's load falls on all of them alike; empty lists when the page cache cannot be dropped."""
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for cmd, cwd in targets.values() if runs else ():
        run_once(cmd, cwd)  # warm-up: compiles bytecode, fills caches
    for _ in range(runs):
        for name, (cmd, cwd) in targets.items():
            if cold and not drop_caches():
                return {name: [] for name in targets}
            samples[name].append(run_once(cmd, cwd, clock))
    return samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--exe", type=Path, metavar="PATH",
                    help=f"packaged executable to measure too (default {DEFAULT_EXE.relative_to(ROOT)} if built)")
    ap.add_argument("--no-exe", action="store_true", help="do not measure the packaged executable")
    ap.add_argument("--warm-only", action="store_true", help="skip the cold runs (their figures are None)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: time from the process's creation (what the trader waits; the default); cpu: the "
                    "process's CPU time to the same moment, steadier when other work shares the cores (it leaves out "
                    "waiting: for the disk, cold, and for the cores)")
    ap.add_argument("--compare", type=Path, metavar="DIR",
                    help="before/after: also measure the terminal from another checkout (a git worktree at an earlier "
                    "commit), in the same turns; reported as compare_* and compare_ratio_*")
    ap.add_argument("--compare-exe", type=Path, metavar="PATH",
                    help="the same for another packaged executable (compare_packaged_*)")
    args = ap.parse_args()
    exe = None if args.no_exe else args.exe or (DEFAULT_EXE if DEFAULT_EXE.is_file() else None)
    if exe is not None and not os.access(exe, os.X_OK):
        print(f"error: {exe} is not an executable (build it with ./scripts/build)", file=sys.stderr)
        return 2
    py = sys.executable
    terminal = [py, "-m", "app", "--exit-after-first-window"]
    targets = {"baseline": ([py, "-c", BASELINE], ROOT), "terminal": (terminal, ROOT)}
    if exe is not None:
        targets["packaged"] = ([str(Path(exe).resolve()), "--exit-after-first-window"], ROOT)
    if args.compare is not None:  # another checkout's sources (python -m app run there), in the same turns
        targets["compare"] = (terminal, args.compare.resolve())
    if args.compare_exe is not None:
        targets["compare_packaged"] = ([str(args.compare_exe.resolve()), "--exit-after-first-window"], ROOT)
    results: dict[str, float | str | None] = {}
    for mode in ("warm", "cold"):
        skip = mode == "cold" and args.warm_only
        for name, samples in measure(targets, 0 if skip else args.runs, cold=mode == "cold",
                                     clock=args.clock).items():
            results[f"{name}_{mode}_s"] = statistics.median(samples) if samples else None
    for mode in ("warm", "cold"):
        t, b = results[f"terminal_{mode}_s"], results[f"baseline_{mode}_s"]
        results[f"ratio_{mode}"] = results[f"{mode}_ratio"] = round(t / b, 2) if t and b else None
        if exe is not None:
            p = results[f"packaged_{mode}_s"]
            results[f"packaged_ratio_{mode}"] = results[f"{mode}_packaged_ratio"] = round(p / b, 2) if p and b else None
        else:  # the keys are always there: None says the packaged executable was not measured
            results[f"{mode}_packaged_ratio"] = None
        for name in ("compare", "compare_packaged"):
            if name in targets:
                c = results[f"{name}_{mode}_s"]
                results[f"{name}_ratio_{mode}"] = round(c / b, 2) if c and b else None
    if exe is not None:
        bundle = Path(exe).resolve().parent
        results["packaged_exe"] = str(exe)
        results["packaged_bundle_mb"] = round(sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()
                                                  and not f.is_symlink()) / 1e6, 1)
    results["runs"] = args.runs
    results["clock"] = args.clock
    results["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    results["python"] = platform.python_version()
    if args.json:
        print(json.dumps(results))
        return 0
    what = "start-up to first window" if args.clock == "wall" else "CPU time to first window"
    print(f"{what}, median of {args.runs} runs ({results['machine']}, Python {results['python']})")
    print(f"{'':26}{'baseline':>12}{'terminal':>12}{'ratio':>8}")
    rows = [(mode, "terminal", "ratio") for mode in ("warm", "cold")]
    if exe is not None:
        rows += [(mode, "packaged", "packaged_ratio") for mode in ("warm", "cold")]
    rows += [(mode, name, f"{name}_ratio") for name in ("compare", "compare_packaged") if name in targets
             for mode in ("warm", "cold")]
    for mode, name, ratio in rows:
        b, t, r = results[f"baseline_{mode}_s"], results[f"{name}_{mode}_s"], results[f"{ratio}_{mode}"]
        fmt = lambda v: f"{v * 1000:10.0f}ms" if v else "       n/a"  # noqa: E731
        label = mode if name == "terminal" else f"{mode}, {name.replace('_', ' ')}"
        print(f"{label:26}{fmt(b):>12}{fmt(t):>12}{(f'{r:.2f}x' if r else 'n/a'):>8}")
    if exe is not None:
        print(f"packaged: {results['packaged_exe']} ({results['packaged_bundle_mb']:.0f} MB on disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
