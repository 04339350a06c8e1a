"""PortPressure core: everything that is not a screen. Never imports Qt."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

UNKNOWN_VERSION = "0+unknown"


def _version() -> str:
    """pyproject.toml's version, the one place it is written.

    Frozen (PyInstaller): core/VERSION, which packaging/portpressure.spec writes from
    pyproject.toml. In a checkout, installed in editable mode or not: pyproject.toml
    itself (installed metadata would go stale when the version is bumped without
    reinstalling). Installed from a wheel: the package metadata.
    """
    here = Path(__file__).parent
    if getattr(sys, "frozen", False):
        try:
            return (here / "VERSION").read_text(encoding="utf-8").strip() or UNKNOWN_VERSION
        except OSError:
            return UNKNOWN_VERSION
    try:
        with open(here.parent / "pyproject.toml", "rb") as f:
            project = tomllib.load(f).get("project", {})
        if project.get("name") == "portpressure":
            return str(project["version"])
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        pass  # not a checkout: the installed metadata says
    from importlib import metadata  # ~20 ms to import: only when it is the answer

    try:
        return metadata.version("portpressure")
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


__version__ = _version()
