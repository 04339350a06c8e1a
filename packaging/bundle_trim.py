"""What of PyInstaller's analysis goes into the build (used by portpressure.spec).

Two steps, both logged to the build folder so a reviewer sees what was left out:
1. `is_wanted`: Qt plugins and files the app never loads are dropped by name: the
   window needs one platform plugin (xcb on Linux, windows on Windows, offscreen for
   headless screenshots), the SVG/ICO readers for its icon (PNG is built into QtGui)
   and the native style; no translations, no software OpenGL (the app draws with
   QPainter only, pyqtgraph's useOpenGL stays off).
2. `unreachable_libraries` (Linux): PyInstaller collects the dependencies of every
   plugin before step 1 drops it, so GTK, cairo, pango, Kerberos (from the dropped
   platform themes) and EGLFS libraries stay behind. Whatever no remaining extension
   module, kept plugin or libpython needs, directly or through another kept library
   (the ELF DT_NEEDED entries), is dropped too. If any needed-list cannot be read the
   step drops nothing: a missing library is worse than a large file.
3. `unreachable_libraries` with `pe_imports` (Windows): the same walk over the DLL import
   tables (pefile), limited to Qt's own DLLs (`unreachable_qt_dlls`): Qt6Network.dll, which
   only dropped plugins import, goes. Other DLLs stay whatever the walk says: a DLL a
   program loads by name (LoadLibrary) is in no import table, and Qt's are the ones we know.
"""

from __future__ import annotations

import mmap
import posixpath
import struct
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

TocEntry = tuple[str, str, str]  # (destination in the bundle, source path or link target, typecode)

# plugin folder -> plugin names kept (None: all of that folder). Folders not listed go.
KEPT_PLUGINS: dict[str, frozenset[str] | None] = {
    "platforms": frozenset({"qxcb", "qwindows", "qoffscreen"}),
    "xcbglintegrations": None,  # xcb loads one of these (GLX or EGL) for every window
    "imageformats": frozenset({"qsvg", "qico"}),  # the icon: .svg on Linux, .ico on Windows
    "iconengines": frozenset({"qsvgicon"}),
    "styles": None,  # Windows' native widget style
    # X11 dead keys and compose sequences in the text fields (host, port, settings values)
    "platforminputcontexts": frozenset({"composeplatforminputcontextplugin"}),
}
# Windows software OpenGL and ANGLE: only loaded for an OpenGL context, which the app never makes.
UNUSED_WINDOWS_FILES = ("opengl32sw.dll", "libegl.dll", "libglesv2.dll", "d3dcompiler_")
# pyqtgraph's logo at double resolution (~0.7 MB): mkQApp loads only the 1x files, and the app
# sets its own icon anyway.
UNUSED_PYQTGRAPH_ICONS = ("peegee_128px@2x.png", "peegee_256px@2x.png", "peegee_512px@2x.png")


APP_PACKAGES = ("core", "gui")  # pyproject's packages (with their subpackages)


def app_modules(root: Path) -> list[str]:
    """Every module of the app's packages under the checkout `root`, as dotted names."""
    modules = []
    for package in APP_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def plugin_name(filename: str) -> str:
    """`libqxcb.so` and `qxcb.dll` are both plugin `qxcb`."""
    stem = filename.split(".", 1)[0]
    return stem.removeprefix("lib")


def _bundle_parts(dest: str) -> tuple[str, ...]:
    """A bundle path's parts, whichever slash it uses (Windows TOCs use backslashes)."""
    return PurePosixPath(dest.replace("\\", "/")).parts


def _qt_plugins_index(parts: tuple[str, ...]) -> int | None:
    """Where Qt's plugins folder is in a bundle path: PySide6/Qt/plugins (Linux) or PySide6/plugins."""
    for i in range(1, len(parts) - 1):
        if parts[i] == "plugins" and parts[i - 1] in ("Qt", "PySide6"):
            return i
    return None


def is_wanted(dest: str) -> bool:
    """Whether a file at bundle path `dest` (either slash) belongs in the build."""
    parts = _bundle_parts(dest)
    name = parts[-1].lower()
    if "translations" in parts or name.startswith(UNUSED_WINDOWS_FILES) or name in UNUSED_PYQTGRAPH_ICONS:
        return False
    i = _qt_plugins_index(parts)
    if i is not None:
        if len(parts) != i + 3:
            return False  # plugins/<folder>/<plugin>: nothing the app loads lives deeper
        folder = parts[i + 1]
        if folder not in KEPT_PLUGINS:
            return False
        kept = KEPT_PLUGINS[folder]
        return kept is None or plugin_name(parts[-1]) in kept
    return True


def elf_needed(path: str) -> list[str] | None:
    """The DT_NEEDED names of an ELF shared object, or None if it is not one we can read."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return _dt_needed(m)
    except (OSError, ValueError, struct.error):
        return None


def _dt_needed(m: mmap.mmap) -> list[str] | None:
    if m[:4] != b"\x7fELF":
        return None
    wide, endian = m[4] == 2, "<" if m[5] == 1 else ">"
    if wide:
        shoff, = struct.unpack_from(endian + "Q", m, 0x28)
        shentsize, shnum = struct.unpack_from(endian + "HH", m, 0x3A)
        section, dyn = endian + "IIQQQQIIQQ", endian + "qQ"
    else:
        shoff, = struct.unpack_from(endian + "I", m, 0x20)
        shentsize, shnum = struct.unpack_from(endian + "HH", m, 0x2E)
        section, dyn = endian + "IIIIIIIIII", endian + "iI"
    sections = [struct.unpack_from(section, m, shoff + i * shentsize) for i in range(shnum)]
    dynamic = [s for s in sections if s[1] == 6]  # SHT_DYNAMIC
    if not dynamic:
        return None
    _, _, _, _, offset, size, link, _, _, _ = dynamic[0]
    strtab_offset = sections[link][4]
    names = []
    for pos in range(offset, offset + size, struct.calcsize(dyn)):
        tag, value = struct.unpack_from(dyn, m, pos)
        if tag == 0:  # DT_NULL
            break
        if tag == 1:  # DT_NEEDED
            start = strtab_offset + value
            names.append(bytes(m[start:m.find(b"\0", start)]).decode())
    return names


def pe_imports(path: str) -> list[str] | None:
    """The DLL names a Windows PE file imports (directly or delay-loaded), or None if it is not
    one we can read. Needs pefile (PyInstaller's own dependency on Windows)."""
    import pefile  # here: only Windows builds (and the tests of this) need it

    try:
        pe = pefile.PE(path, fast_load=True)
    except (OSError, pefile.PEFormatError):
        return None
    with pe:
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
                                               pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT"]])
        tables = getattr(pe, "DIRECTORY_ENTRY_IMPORT", []) + getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])
        return [entry.dll.decode("ascii", "replace") for entry in tables]


def _is_root(dest: str, typecode: str) -> bool:
    """Loaded by Python or Qt directly rather than as someone's dependency."""
    parts = _bundle_parts(dest)
    plugin = _qt_plugins_index(parts) is not None
    name = parts[-1].lower()
    return typecode == "EXTENSION" or plugin or name.startswith(("libpython", "python3"))


def unreachable_libraries(entries: Iterable[TocEntry],
                          needed: Callable[[str], list[str] | None] = elf_needed) -> set[str]:
    """Destinations of the binaries (and symlinks to them) nothing kept needs.

    `entries`: PyInstaller TOC entries; BINARY and EXTENSION ones are the libraries, SYMLINK
    ones (PyInstaller lists them with the data files) the links to them; others are ignored.
    """
    entries = list(entries)
    real = {dest: src for dest, src, kind in entries if kind in ("BINARY", "EXTENSION")}
    # Windows matches DLL names without regard to case; ELF names are exact (and never differ so).
    fold = str.lower
    link_target = {dest: posixpath.normpath(posixpath.join(posixpath.dirname(dest), src))
                   for dest, src, kind in entries if kind == "SYMLINK"}
    by_name: dict[str, str] = {}
    for dest in real:
        by_name.setdefault(fold(_bundle_parts(dest)[-1]), dest)
    for dest, target in link_target.items():
        if target in real:
            by_name.setdefault(fold(posixpath.basename(dest)), target)
    reached: set[str] = set()
    todo = [dest for dest, _, kind in entries if dest in real and _is_root(dest, kind)]
    while todo:
        dest = todo.pop()
        if dest in reached:
            continue
        reached.add(dest)
        names = needed(real[dest])
        if names is None:
            return set()  # cannot tell what this one needs: keep everything
        todo.extend(by_name[fold(n)] for n in names if fold(n) in by_name and by_name[fold(n)] not in reached)
    dropped = {dest for dest in real if dest not in reached}
    dropped.update(dest for dest, target in link_target.items() if target in dropped)
    return dropped


def unreachable_qt_dlls(entries: Iterable[TocEntry],
                        needed: Callable[[str], list[str] | None] = pe_imports) -> set[str]:
    """Windows: the bundled Qt DLLs (Qt6*.dll) no kept extension, plugin or python3*.dll imports."""
    return {dest for dest in unreachable_libraries(entries, needed)
            if _bundle_parts(dest)[-1].lower().startswith("qt6")}
