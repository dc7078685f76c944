#!/usr/bin/env python3
"""The peers the benchmarks compare against (cryptofeed's feed handlers, finplot's chart), kept out of the terminal.

They are never runtime dependencies and never enter ``.venv``: finplot declares PyQt6, and pyqtgraph picks the first Qt
binding it finds, so installing it beside the terminal could change which Qt the terminal itself runs on. Instead they
are installed without their declared dependencies into ``.bench-peers/`` (git-ignored), with only the extra modules
they import that ``.venv`` lacks, and a benchmark puts that folder on ``sys.path`` for its own process only.

    .venv/bin/python scripts/bench_peers.py          # install (or check) the peers
    from bench_peers import use_peers; use_peers()   # inside a benchmark: install if missing, then import them
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = ROOT / ".bench-peers"

# Pinned so a figure recorded in docs/BENCHMARKS.md names the peer it was measured against.
PEERS = ("cryptofeed==2.5.0", "finplot==1.9.7")
# What those two import that the terminal's environment does not already have (their other declared dependencies,
# PyQt6 above all, are left out on purpose).
PEER_IMPORTS = ("yapic.json", "order_book", "aiofile", "caio", "aiodns", "pycares", "pyyaml")


def install() -> Path:
    PEERS_DIR.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade", "--target", str(PEERS_DIR),
           *PEERS, *PEER_IMPORTS]
    print(f"installing benchmark peers into {PEERS_DIR.name}/ (never into .venv) ...", file=sys.stderr)
    subprocess.run(cmd, check=True)
    return PEERS_DIR


def installed() -> bool:
    return all((PEERS_DIR / name).is_dir() for name in ("cryptofeed", "finplot"))


def use_peers(install_if_missing: bool = True) -> bool:
    """Put the peers on this process's path; True when they are importable. The terminal's Qt binding stays first:
    the folder is appended, and ``PySide6`` is imported before anything from it."""
    if not installed():
        if not install_if_missing:
            return False
        try:
            install()
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"benchmark peers unavailable ({exc}); their columns are left out", file=sys.stderr)
            return False
    import PySide6  # noqa: F401  (pyqtgraph must see PySide6 loaded before finplot is imported)

    if str(PEERS_DIR) not in sys.path:
        sys.path.append(str(PEERS_DIR))
    return True


if __name__ == "__main__":
    install()
    print("ok: " + ", ".join(PEERS))
