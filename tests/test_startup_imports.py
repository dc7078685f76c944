"""What the terminal imports before its first window: the frame (chart, menus, status bar) needs the settings and
Qt, nothing of the session. Each module kept out here is start-up time the trader does not wait for (the session,
its trading stack, the journal's SQLite, the feed's websockets, the model clients); scripts/bench_startup.py times
it, this only checks what is loaded, so it does not depend on how busy the machine is.

A real process each: ``python -m app``'s own ``main()``, run to the first window (``--exit-after-first-window``),
with ``sys.modules`` taken at the moment the first paint is done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import DECISION_SOURCE_ENV

ROOT = Path(__file__).resolve().parents[1]

# Runs the terminal's main() and notes sys.modules when it measures the first window (right after the first paint).
PROBE = r"""
import json, sys
import app.__main__ as main
seen = []
first_window = main._seconds_since_process_start
def at_first_window():
    if not seen:
        seen.append(sorted(sys.modules))
    return first_window()
main._seconds_since_process_start = at_first_window
rc = main.main(sys.argv[1:])
print("MODULES_AT_FIRST_WINDOW=" + json.dumps(seen[0] if seen else None), flush=True)
sys.exit(rc)
"""

# Needed only once the session exists (after the first paint), or only in some runs: the live exchange client,
# the model clients and runtime, the feed, the journal, the session and its trading and decision stacks.
DEFERRED = (
    "ccxt", "aiohttp", "xllamacpp", "openai", "httpx", "websockets", "sqlite3", "keyring", "pandas",
    "app.session", "app.trading", "app.llm.local", "app.llm.providers", "app.llm.service", "app.llm.cache",
    "app.llm.schema", "app.market.features", "app.market.connection", "app.market.sim", "app.market.history",
    "app.perf.probes", "app.ui.bridge", "app.view.model",
)


def _modules_at_first_window(tmp_path: Path, *flags: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != DECISION_SOURCE_ENV}  # the user's default: the local model
    env.update(QT_QPA_PLATFORM="offscreen", **{v: str(tmp_path / v.lower()) for v in (
        "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")})
    proc = subprocess.run([sys.executable, "-c", PROBE, "--exit-after-first-window", *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "first_window_s=" in proc.stdout, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("MODULES_AT_FIRST_WINDOW="))
    modules = json.loads(line.split("=", 1)[1])
    assert modules is not None, "the first window was never measured"
    return set(modules)


def _deferred_loaded(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == d or m.startswith(d + ".") for d in DEFERRED))


@pytest.mark.parametrize("flags", [(), ("--llm-url", "http://127.0.0.1:9/v1", "--model", "gpt-test")],
                         ids=["default-local-model", "openai-endpoint"])
def test_nothing_of_the_session_is_imported_before_the_first_window(tmp_path, flags):
    modules = _modules_at_first_window(tmp_path, *flags)
    # Taken at the right moment: the window is made of these.
    assert {"PySide6.QtWidgets", "pyqtgraph", "app.ui.main_window", "app.config"} <= modules
    assert _deferred_loaded(modules) == []


def test_the_settings_default_price_band_is_the_caches():
    # app.config writes the default rather than importing the cache before the first window.
    from app.config import CACHE_PRICE_BAND_ATR_DEFAULT, Settings
    from app.llm.cache import DEFAULT_PRICE_BAND_ATR

    assert CACHE_PRICE_BAND_ATR_DEFAULT == DEFAULT_PRICE_BAND_ATR == Settings().cache_price_band_atr
