"""A line plot of one or two series against step or time (plotext through textual-plotext)."""
from __future__ import annotations

import itertools
import math

from textual_plotext import PlotextPlot

from ..follow import Series

# Every series gets its colour here: plotext would pick from its theme's sequence when the series is added,
# and the theme is set only when a plot is first drawn, so the colours would depend on timing.
COLORS = [(0, 130, 200), (60, 180, 75), (230, 25, 75), (245, 130, 48)]


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
        for (label, series, side), color in zip(lines, itertools.cycle(COLORS)):
            if series.x:
                plt.plot(series.x, series.y, label=label, yside=side, marker="braille", color=color)
        self.refresh()


AXES = {"hours": "device hours", "params": "trainable parameters"}  # CostPoint field: axis name


def power_ticks(low: float, high: float) -> tuple[list[int], list[str]]:
    """The exponents of the powers of ten from the one at or below ``low`` to the one above ``high``, and
    their labels (0.01 … 1k, 1M): the ticks and the bounds of a log axis."""
    first = math.floor(math.log10(low))
    powers = list(range(first, max(math.ceil(math.log10(high)), first + 1) + 1))
    return powers, [_power_name(p) for p in powers]


def _power_name(power: int) -> str:
    """10**power as ticks read: 0.01, 1, 100, 1k, 10k, 1M, 1G."""
    thousands = min(max(power // 3, 0), 3)
    return f"{10 ** (power - 3 * thousands) if power >= 0 else 10.0 ** power:g}" + ("", "k", "M", "G")[thousands]


class CostScatter(PlotextPlot):
    """Few-shot accuracy against one cost on a log x axis, each point labelled with its method.

    ``show(points, axis)`` redraws; ``plotted`` holds the (label, x, y) drawn and ``left_out`` the labels
    of points without both figures (a zero-shot run tunes 0 parameters: no place on a log axis). The
    log is taken here, on a linear plotext axis: plotext's own log scale takes the log again at every
    redraw."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.plotted: list[tuple[str, float, float]] = []
        self.left_out: list[str] = []

    def show(self, points, axis: str) -> None:
        plt = self.plt
        plt.clear_data()
        several = len({p.backbone for p in points}) > 1
        name = (lambda p: f"{p.label} · {p.backbone}") if several else (lambda p: p.label)
        shown = [(name(p), getattr(p, axis), p.few) for p in points]
        self.plotted = [(n, x, y) for n, x, y in shown if x is not None and x > 0 and y is not None]
        self.left_out = [n for n, x, y in shown if (n, x, y) not in self.plotted]
        plt.xlabel(f"{AXES[axis]} (log)")
        plt.ylabel("few-shot %")
        if self.plotted:
            xs, ys = [math.log10(x) for _, x, _ in self.plotted], [y for _, _, y in self.plotted]
            powers, names = power_ticks(min(x for _, x, _ in self.plotted), max(x for _, x, _ in self.plotted))
            plt.scatter(xs, ys, marker="●", color=COLORS[0])
            middle = (powers[0] + powers[-1]) / 2  # labels in the right half of the axis end at their point
            for (label, _, y), x in zip(self.plotted, xs):
                right = x > middle
                plt.text(f"{label} ●" if right else f"● {label}", x, y, alignment="right" if right else "left",
                         color=COLORS[0])
            plt.xlim(powers[0], powers[-1])
            plt.xticks(powers, names)
        self.refresh()
