"""The build's pins cover every runtime dependency (a new one must be pinned, or the binary lacks it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _check_pins():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("dcosd_packaging_check_pins", REPO / "packaging" / "check_pins.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_runtime_dependency_is_pinned_for_the_build() -> None:
    mod = _check_pins()
    assert mod.missing() == [], "pin these in packaging/requirements-build.txt (see its header)"
    pins = mod.pinned()
    assert "pyinstaller" in pins and "pystemd" in pins
    assert all(v and v[0].isdigit() for v in pins.values()), pins


def test_a_new_dependency_is_caught(tmp_path: Path) -> None:
    mod = _check_pins()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["aiohttp>=3", "Brand_New.Thing[extra]>=1"]\n'
                         '[project.optional-dependencies]\nsystemd = ["pystemd>=0.13"]\n')
    assert mod.runtime_dependencies(pyproject) == {"aiohttp", "brand-new-thing", "pystemd"}
