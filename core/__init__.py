"""PortPressure core: everything that is not a screen. Never imports Qt."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("portpressure")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0"
