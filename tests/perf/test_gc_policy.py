"""Start-up's objects are frozen out of the garbage collector's way: a full collection afterwards does not walk
them (one over ~180k start-up objects held the loop ~100 ms of CPU, the largest cause of loop lag in a soak)."""

from __future__ import annotations

import gc

from app.perf.gc_policy import freeze_long_lived


def test_a_full_collection_after_the_freeze_skips_the_objects_alive_before_it():
    kept = [{"node": i, "self": None} for i in range(50_000)]
    for d in kept:
        d["self"] = d  # containers the collector tracks, as Qt wrappers and models are
    try:
        frozen = freeze_long_lived()
        assert frozen >= len(kept)
        assert all(not any(d is o for o in gc.get_objects(generation=2)) for d in kept[:3])
        # what a full collection still has to walk: far fewer objects than were alive at the freeze
        assert len(gc.get_objects()) < frozen / 2
    finally:
        gc.unfreeze()
