"""Garbage collection kept out of the event loop's way.

CPython's full (generation-2) collection walks every tracked object. Once the terminal has started (Qt wrappers,
pyqtgraph items, pydantic models, the journal's restored state, history) that is ~180k objects and one collection
holds the loop 90-100 ms of CPU (0.4-0.5 s wall on a busy 2-core machine), one or two a minute at 5k msgs/s: the
largest single cause of loop lag a soak found. Those start-up objects live as long as the process, so once start-up
has settled they are collected once and frozen (``gc.freeze``): later collections skip them and cost ~0 ms.

The price: a reference cycle among the frozen objects that becomes garbage later is never freed (objects without
cycles are still freed by reference counting). It is one snapshot taken once, so the cost is bounded.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

# Long enough for the first history load, the panels and the journal's restore to be done and their temporary
# objects gone; short enough that the trader's first minutes already run without full collections.
SETTLE_S = 15.0


def freeze_long_lived() -> int:
    """Collects once, then moves every surviving object to the permanent generation; returns how many are frozen."""
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d long-lived objects out of the garbage collector's way (%.0f ms, once)",
             frozen, (time.perf_counter() - t0) * 1000)
    return frozen
