"""Imports scripts/llm_dev_server.py (a script, not a package) for tests that need a real OpenAI-style server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "llm_dev_server.py"


def load():
    name = "llm_dev_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name while the class is created
    spec.loader.exec_module(module)
    return module
