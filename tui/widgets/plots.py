"""A line plot of one or two series against step or time (plotext through textual-plotext)."""
from __future__ import annotations

from textual_plotext import PlotextPlot

from ..follow import Series


class SeriesPlot(PlotextPlot):
    """``show([(label, series, "left"|"right"), ...])`` redraws; an empty plot says it is waiting."""

    def __init__(self, title: str, xlabel: str, **kwargs):
        super().__init__(**kwargs)
        self._title, self._xlabel = title, xlabel
        self.show([])

    def show(self, lines: list[tuple[str, Series, str]], title: str | None = None,
             empty: str = "waiting for data") -> None:
        plt = self.plt
        plt.clear_data()
        self._title = title or self._title
        has_data = any(s.x for _, s, _ in lines)
        plt.title(self._title if has_data or not empty else f"{self._title} ({empty})")
        plt.xlabel(self._xlabel)
        for label, series, side in lines:
            if series.x:
                plt.plot(series.x, series.y, label=label, yside=side, marker="braille")
        self.refresh()
