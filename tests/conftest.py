"""Shared test helpers: where the recorded exchange data lives, and an async wait-until."""

from __future__ import annotations

import asyncio
import atexit
import decimal
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")
# The suite never touches the tester's own settings, journal, logs or OS keyring: every platformdirs location
# (and so every subprocess's) points into one temporary folder, and keyring has no backend unless a test sets one.
_HOME = Path(tempfile.mkdtemp(prefix="tt-tests-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
for _var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
    os.environ[_var] = str(_HOME / _var.lower())
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
# The offline rules propose unless a test asks for the local model (tests/llm/test_local_*.py and the default-run
# tests do): a model answering in every test would change what they check and cost CPU the suite shares.
os.environ["TRADING_TERMINAL_DECISIONS"] = "rules"



@pytest.fixture(autouse=True, scope="session")
def _market_events_write_once():
    """Every test runs with the market events' fields write-once: the classes are not frozen (a frozen dataclass
    costs several times more to build on the feed's hot path), so the tests are what holds the rule that nothing, UI,
    trading or view model, mutates an event every subscriber shares (app/models.py)."""
    from app.models import guard_market_events

    guard_market_events(True)
    yield
    guard_market_events(False)


@pytest.fixture(autouse=True)
def _default_decimal_context():
    """Every test starts with Python's default decimal context, as the terminal does: a bare ccxt client a test
    makes for itself (not through ``live_exchange.make_client``, which keeps ccxt's context to itself) sets the
    thread's rounding to HALF_UP for good, and later tests would round money ccxt's way."""
    decimal.setcontext(decimal.Context())
    yield


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BINANCE_CAPTURE = SHARED_DATA / "binance-spot-btcusdt-capture"


def require_data(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"recorded exchange data not found at {path} (../shared/data beside the project)")
    return path


@pytest.fixture
def binance_capture() -> Path:
    return require_data(BINANCE_CAPTURE / "btcusdt_20240808.gz")


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """The async form of qtbot.waitUntil: yields to the loop between checks, fails with a message on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)
