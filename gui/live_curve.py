"""A plot curve that takes a new sample's data without PlotDataItem's per-call work.

Every second each live curve gets the window's samples again (one more point). Through
PlotDataItem.setData that is ~100 us of Python a curve (arguments, style options, the
display dataset, a signal the legend repaints on) before the inner PlotCurveItem gets
the arrays; handing them to the PlotCurveItem directly costs ~15 us. With seven curves
it was 1.2 ms of the plot's ~8 ms a sample (update and paint, 1268x300, offscreen).

Only where PlotDataItem would hand the arrays over unchanged: no clipping to the view,
no downsampling, no symbols, no log/FFT/derivative/phase mapping, no dynamic range
limit. Otherwise (a paused or replayed plot thins its curves) setData as usual.
getData(), xData and yData answer as after setData (pinned by a test against
PlotDataItem's own path: this leans on pyqtgraph 0.14's PlotDataset).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from pyqtgraph.graphicsItems.PlotDataItem import PlotDataset


class LiveCurve(pg.PlotDataItem):
    # Whether the inner curve holds this item's style (pen, connect mode, antialias):
    # PlotDataItem hands style over only together with data, so after a style change
    # made while there was no data, the next arrays go the usual way.
    _inner_styled = False

    def updateItems(self, styleUpdate: bool = True) -> None:  # noqa: N802,N803 - pyqtgraph's names
        super().updateItems(styleUpdate)
        self._inner_styled = self._dataset is not None

    def _passes_data_through(self) -> bool:
        opts: dict[str, Any] = self.opts
        return (self._inner_styled and not opts["clipToView"] and not opts["autoDownsample"]
                and opts["downsample"] == 1 and opts["symbol"] is None and opts["dynamicRangeLimit"] is None
                and not opts["fftMode"] and opts["logMode"] == [False, False]
                and not opts["derivativeMode"] and not opts["phasemapMode"])

    def set_live_data(self, x: np.ndarray, y: np.ndarray) -> None:
        """Show x, y (float64 views, equal lengths) as setData(x, y) would."""
        if not len(x) or not self._passes_data_through():
            self.setData(x, y)
            return
        self._dataset = PlotDataset(x, y)
        self._datasetMapped = None
        self._datasetDisplay = None
        self.curve.setData(x=x, y=y)
        if not self.curve.isVisible():  # hidden while it had no data
            self.curve.show()
        self.informViewBoundsChanged()
