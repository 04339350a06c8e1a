"""pyproject.toml's version, and the Windows version resource made from it (used by the spec)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    with open(pyproject, "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def version_tuple(version: str) -> tuple[int, int, int, int]:
    """The four numbers Windows shows: the release part of a PEP 440 version, zero-padded
    ("1.2rc1" -> 1.2.0.0; a pre-release suffix is not a number Windows can show)."""
    release = re.match(r"\d+(?:\.\d+)*", version)
    numbers = [int(n) for n in release.group(0).split(".")[:4]] if release else []
    padded = (numbers + [0, 0, 0, 0])[:4]
    return (padded[0], padded[1], padded[2], padded[3])


def version_resource_text(version: str, original_filename: str = "PortPressure.exe") -> str:
    """PyInstaller's VSVersionInfo source (the format `pyi-grab_version` writes)."""
    v = version_tuple(version)
    strings = {
        "CompanyName": "PortPressure",
        "FileDescription": "PortPressure - ephemeral TCP port exhaustion",
        "FileVersion": version,
        "InternalName": original_filename.removesuffix(".exe"),
        "OriginalFilename": original_filename,
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


def write_version_file(path: Path, version: str, original_filename: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(version_resource_text(version, original_filename), encoding="utf-8")
    return str(path)
