"""The file and folder questions the window asks, and the names it suggests. Tests and
benchmarks hand the window their own choosers instead of these dialogs."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QFileDialog, QWidget

from core.report import safe_host

FolderChooser = Callable[[QWidget, str], str | None]
FileChooser = Callable[[QWidget, str], str | None]  # (parent, start folder or suggested path)
RECORDING_FILTER = "PortPressure recordings (*.jsonl.gz *.jsonl *.gz *.json);;All files (*)"


def ask_folder(parent: QWidget, start: str) -> str | None:
    folder = QFileDialog.getExistingDirectory(parent, "Save evidence into folder", start)
    return folder or None


def ask_recording(parent: QWidget, start: str) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, "Open recording", start, RECORDING_FILTER)
    return path or None


def ask_record_file(parent: QWidget, suggested: str) -> str | None:
    # An existing recording is appended to (a new session in the same file), not replaced;
    # the Recorder refuses any other existing file: no "replace it?" question here.
    path, _ = QFileDialog.getSaveFileName(parent, "Record samples to file", suggested, RECORDING_FILTER,
                                          options=QFileDialog.Option.DontConfirmOverwrite)
    return path or None


def default_recording_name(moment: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(moment))
    return f"portpressure-{safe_host(socket.gethostname())}-{stamp}.jsonl.gz"


def pixmap_png(pixmap: QPixmap) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not pixmap.save(buffer, "PNG"):
        raise OSError("could not encode the screenshot as PNG")
    buffer.close()
    return bytes(data.data())
