"""Cheap checks of what the packaged build relies on. The executable itself is built and smoke-tested by
./scripts/build --smoke (scripts/test runs it after this suite), never inside pytest."""

from __future__ import annotations

import ast
import os
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

import pytest

from app import version as app_version
from app.ui import theme

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "build.spec"


def spec_constant(name: str):
    """A literal assigned at the top level of build.spec (which is Python, run by PyInstaller)."""
    for node in ast.parse(SPEC.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"build.spec assigns no {name}")


def test_spec_bundles_resources_and_metadata_and_leaves_test_tools_out():
    text = SPEC.read_text(encoding="utf-8")
    assert '"resources"), "resources")' in text  # resources/ lands in _internal/resources
    assert 'copy_metadata("ai-trading-terminal")' in text  # importlib.metadata works in the bundle
    excludes = spec_constant("EXCLUDES")
    assert {"pytest", "_pytest", "tkinter", "PyQt5", "PyQt6", "PySide2"} <= set(excludes)
    assert "iconengines" in spec_constant("KEEP_PLUGINS")  # the SVG icon needs Qt's SVG icon engine


def test_resources_exist_and_the_icon_is_svg():
    for name in ("theme_dark.qss", "theme_light.qss", "icon.svg"):
        assert (ROOT / "resources" / name).is_file(), name
    root = ET.parse(ROOT / "resources" / "icon.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_the_app_imports_is_excluded_from_the_bundle():
    excludes = spec_constant("EXCLUDES")
    offenders = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for name in _imported_modules(path):
            hit = [x for x in excludes if name == x or name.startswith(x + ".")]
            if hit:
                offenders.append(f"{path.relative_to(ROOT)} imports {name} (excluded as {hit[0]})")
    assert not offenders, "build.spec EXCLUDES would break the packaged app:\n" + "\n".join(offenders)


def test_resources_dir_in_a_source_checkout():
    assert theme.resources_dir() == ROOT / "resources"


def test_resources_dir_in_a_frozen_bundle(monkeypatch, tmp_path):
    bundle = tmp_path / "_internal"
    (bundle / "resources").mkdir(parents=True)
    (bundle / "resources" / "theme_dark.qss").write_text("QWidget { color: #123456; }", encoding="utf-8")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    assert theme.resources_dir() == bundle / "resources"
    assert theme.stylesheet(theme.DARK) == "QWidget { color: #123456; }"


def test_build_script_is_executable():
    assert os.access(ROOT / "scripts" / "build", os.X_OK)


def test_version_comes_from_the_package_metadata():
    assert app_version.__version__ == version("ai-trading-terminal")
    assert app_version.__version__ != app_version.UNKNOWN


def test_version_falls_back_to_pyproject_then_to_unknown(monkeypatch, tmp_path):
    import tomllib

    monkeypatch.setattr(app_version, "_from_metadata", lambda: None)
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert app_version.get_version() == expected
    read = app_version._from_pyproject
    monkeypatch.setattr(app_version, "_from_pyproject", lambda: read(tmp_path / "none.toml"))
    assert app_version.get_version() == app_version.UNKNOWN


@pytest.mark.parametrize("text", ['[project]\nname = "something-else"\nversion = "9.9"\n', "not toml ["])
def test_version_ignores_a_foreign_or_broken_pyproject(tmp_path, text):
    path = tmp_path / "pyproject.toml"
    path.write_text(text, encoding="utf-8")
    assert app_version._from_pyproject(path) is None
