"""The live broker's fixtures (``api``: the built-in exchange's trading API on loopback, ``journal``: a real SQLite
journal, ``broker``: a LiveBroker started on both), defined in ``live_support`` beside its helpers."""

from tests.trading.live_support import api, broker, journal

__all__ = ["api", "broker", "journal"]
