"""Render resources/portpressure.svg to portpressure.png (256 px) and a multi-size
portpressure.ico (16-256 px, what Windows Explorer and the taskbar pick from).

Run from the repository: `QT_QPA_PLATFORM=offscreen python3 packaging/make_icons.py`.
Qt's ico plugin writes only one image per file, so the .ico container (ICONDIR plus
one PNG-compressed entry per size, read by Windows Vista and later) is assembled here.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render(renderer: QSvgRenderer, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def main() -> int:
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(RESOURCES / "portpressure.svg"))
    if not renderer.isValid():
        print(f"make_icons: cannot read {RESOURCES / 'portpressure.svg'}", file=sys.stderr)
        return 1
    png = RESOURCES / "portpressure.png"
    if not render(renderer, 256).save(str(png), "PNG"):
        print(f"make_icons: cannot write {png}", file=sys.stderr)
        return 1
    ico = RESOURCES / "portpressure.ico"
    try:
        ico.write_bytes(ico_bytes([png_bytes(render(renderer, size)) for size in ICO_SIZES], ICO_SIZES))
    except OSError as exc:
        print(f"make_icons: cannot write {ico}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {png} and {ico} ({', '.join(map(str, ICO_SIZES))} px)")
    return 0


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def ico_bytes(pngs: list[bytes], sizes: tuple[int, ...]) -> bytes:
    """ICONDIR (reserved, type 1 = icon, count), one 16-byte ICONDIRENTRY per image
    (width and height 0 mean 256), then the PNG data."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = len(header) + 16 * len(pngs)
    entries = b""
    for png, size in zip(pngs, sizes, strict=True):
        side = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(png), offset)
        offset += len(png)
    return header + entries + b"".join(pngs)


if __name__ == "__main__":
    sys.exit(main())
