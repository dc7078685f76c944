"""Colours of the terminal: dark by default, light available. Widgets style through resources/*.qss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Theme:
    name: str
    background: str
    panel: str
    text: str
    muted: str
    grid: str
    up: str
    down: str
    up_volume: str
    down_volume: str
    accent: str
    warn: str
    bad: str


DARK = Theme(
    name="dark",
    background="#0d1117",
    panel="#161b22",
    text="#d7dde4",
    muted="#7d8590",
    grid="#30363d",
    up="#26a69a",
    down="#ef5350",
    up_volume="#1f5f5a",
    down_volume="#7a2f2e",
    accent="#f0b90b",
    warn="#d29922",
    bad="#f85149",
)
LIGHT = Theme(
    name="light",
    background="#ffffff",
    panel="#f3f4f6",
    text="#1f2328",
    muted="#656d76",
    grid="#d0d7de",
    up="#089981",
    down="#f23645",
    up_volume="#9bd6cc",
    down_volume="#f5a9b0",
    accent="#9a6700",
    warn="#9a6700",
    bad="#cf222e",
)
# A new proposal's card and the Decisions dock title light up this long: seen, not shouted.
FLASH_MS = 700

THEMES = {t.name: t for t in (DARK, LIGHT)}
_current = DARK


def current() -> Theme:
    return _current


def set_current(name: str) -> Theme:
    global _current
    _current = THEMES[name]
    return _current


def resources_dir() -> Path:
    """resources/ at the repository root in a source checkout; in a PyInstaller bundle build.spec puts it in the
    bundle's data directory, ``sys._MEIPASS`` (``_internal/`` beside the executable in onedir)."""
    import sys

    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def stylesheet(t: Theme) -> str:
    path = resources_dir() / f"theme_{t.name}.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""
