"""PortPressure window: PySide6 + pyqtgraph only; consumes core, never the other way."""
