"""Windows version resource generated from pyproject.toml's version (used by the spec)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def version_tuple(version: str) -> tuple[int, int, int, int]:
    numbers = [int("".join(c for c in part if c.isdigit()) or 0) for part in version.split(".")[:4]]
    padded = (numbers + [0, 0, 0, 0])[:4]
    return (padded[0], padded[1], padded[2], padded[3])


def version_resource_text(version: str) -> str:
    """PyInstaller's VSVersionInfo source (the format `pyi-grab_version` writes)."""
    v = version_tuple(version)
    strings = {
        "CompanyName": "PortPressure",
        "FileDescription": "PortPressure - ephemeral TCP port exhaustion",
        "FileVersion": version,
        "InternalName": "PortPressure",
        "OriginalFilename": "PortPressure.exe",
        "ProductName": "PortPressure",
        "ProductVersion": version,
    }
    items = ",\n          ".join(f"StringStruct({k!r}, {s!r})" for k, s in strings.items())
    return f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={v}, prodvers={v}, mask=0x3f, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
          {items}])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""


def write_version_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(version_resource_text(project_version()), encoding="utf-8")
    return str(path)
