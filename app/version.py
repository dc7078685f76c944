"""The terminal's version: one number, from the installed package's metadata (pyproject.toml's ``version``).

A source checkout is installed (``pip install -e .``), so the metadata is there; the PyInstaller bundle carries a
copy of it (``copy_metadata`` in build.spec). If neither is found, for instance when run from an uninstalled
checkout, pyproject.toml itself is read; failing that the version is ``0+unknown`` rather than an error.
"""

from __future__ import annotations

from pathlib import Path

DIST_NAME = "ai-trading-terminal"
UNKNOWN = "0+unknown"


def _from_metadata() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DIST_NAME)
    except PackageNotFoundError:
        return None


def _from_pyproject(path: Path | None = None) -> str | None:
    import tomllib

    path = path or Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        with path.open("rb") as fh:
            project = tomllib.load(fh).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = project.get("version") if project.get("name") == DIST_NAME else None
    return value if isinstance(value, str) and value else None


def get_version() -> str:
    return _from_metadata() or _from_pyproject() or UNKNOWN


__version__ = get_version()
