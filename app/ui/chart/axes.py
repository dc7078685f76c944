"""The chart's time axis: pyqtgraph's DateAxisItem, which remembers each tick's label.

A pan redraws the time axis every frame and shows mostly the same ticks again; formatting them afresh (time zone,
strftime) was about a fifth of the axis' redraw. A label depends only on its value, the zoom level's format for the
spacing and the UTC offset, so it is kept under those (tests/ui/test_chart_pan_frame.py renders the same pixels).

Tried and left out: filling the grid lines as one-pixel rectangles (10x faster than Qt's translucent cosmetic
lines) covers other pixels than the line does for some sub-pixel positions (the line rasteriser rounds to 1/64 px).
"""

from __future__ import annotations

import pyqtgraph as pg


class TimeAxis(pg.DateAxisItem):
    _LABELS_KEPT = 4096

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._labels: dict[tuple, str] = {}

    def tickStrings(self, values, scale, spacing):
        level = (id(self.zoomLevel), self.utcOffset, scale, spacing)
        labels = self._labels
        todo = [v for v in values if (level, v) not in labels]
        if todo:
            if len(labels) > self._LABELS_KEPT:
                labels.clear()
            for v, text in zip(todo, super().tickStrings(todo, scale, spacing), strict=True):
                labels[(level, v)] = text
        return [labels[(level, v)] for v in values]
