"""A line plot of one or two series against step or time (plotext through textual-plotext)."""
from __future__ import annotations

import itertools
import math

from rich.text import Text
from textual_plotext import PlotextPlot

from ..follow import Series

# Every series gets its colour here: plotext would pick from its theme's sequence when the series is added,
# and the theme is set only when a plot is first drawn, so the colours would depend on timing.
COLORS = [(0, 130, 200), (60, 180, 75), (230, 25, 75), (245, 130, 48)]


class SeriesPlot(PlotextPlot):
    """``show([(label, series, "left"|"right"), ...])`` redraws; an empty plot says it is waiting.

    The curves carry no plotext labels (plotext draws its legend over them): :meth:`legend` names them, in
    their colours, for a line beside the plot. The x axis spans the points drawn, from real samples only:
    a series of one point waits for a second unless ``xlim`` is given (steps: 0 to the run's length)."""

    def __init__(self, title: str, xlabel: str, **kwargs):
        super().__init__(**kwargs)
        self._title, self._xlabel = title, xlabel
        self.drawn: list[tuple[str, tuple, str]] = []  # (label, colour, side) of each curve drawn
        self.show([])

    def show(self, lines: list[tuple[str, Series, str]], title: str | None = None,
             empty: str = "waiting for data", xlim: tuple[float, float] | None = None) -> None:
        plt = self.plt
        plt.clear_data()
        self._title = title or self._title
        least = 1 if xlim else 2
        drawable = [(label, series, side, color) for (label, series, side), color in zip(lines, itertools.cycle(COLORS))
                    if len(series.x) >= least]
        one = not drawable and any(series.x for _, series, _ in lines)
        plt.title(self._title if drawable or not empty else f"{self._title} ({'1 sample' if one else empty})")
        plt.xlabel(self._xlabel)
        for label, series, side, color in drawable:
            plt.plot(series.x, series.y, yside=side, marker="braille", color=color)
        if drawable:
            xs = [x for _, series, _, _ in drawable for x in series.x]
            plt.xlim(*(xlim or (min(xs), max(xs))))
        self.drawn = [(label, color, side) for label, _, side, color in drawable]
        self.refresh()

    def legend(self) -> Text:
        """``━ loss  ━ lr (right axis)``: each curve drawn, in its colour."""
        sides = {side for _, _, side in self.drawn}
        return Text("  ").join(Text.assemble(("━━ ", "rgb({},{},{})".format(*color)), label + (" (right axis)" if side == "right"
                                                                                and len(sides) > 1 else ""))
                               for label, color, side in self.drawn)


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
    """Few-shot accuracy against one cost on a log x axis, each point numbered; :meth:`legend` names them.

    ``show(points, axis)`` redraws; ``plotted`` holds the (label, x, y) drawn, ``numbers`` the number each
    drawn label carries (1, 2, …, in ``plotted`` order) and ``left_out`` the labels of points without both
    figures (a zero-shot run tunes 0 parameters: no place on a log axis). Method names would overwrite each
    other where points crowd (many at few = 0), so the picture carries numbers only, and points that land
    on one character cell share one mark ("1,3"). The log is taken here, on a linear plotext axis:
    plotext's own log scale takes the log again at every redraw."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.plotted: list[tuple[str, float, float]] = []
        self.left_out: list[str] = []
        self.marks: list[tuple[str, float, float]] = []  # (text, log x, y) written on the picture
        self.shown: tuple = ([], "hours")

    def on_resize(self) -> None:
        self.show(*self.shown)  # the marks depend on the canvas size

    def show(self, points, axis: str) -> None:
        self.shown = (points, axis)
        plt = self.plt
        plt.clear_data()
        several = len({p.backbone for p in points}) > 1
        name = (lambda p: f"{p.label} · {p.backbone}") if several else (lambda p: p.label)
        shown = [(name(p), getattr(p, axis), p.few) for p in points]
        self.plotted = [(n, x, y) for n, x, y in shown if x is not None and x > 0 and y is not None]
        self.left_out = [n for n, x, y in shown if (n, x, y) not in self.plotted]
        self.marks = []
        plt.xlabel(f"{AXES[axis]} (log)")
        plt.ylabel("few-shot %")
        if self.plotted:
            xs, ys = [math.log10(x) for _, x, _ in self.plotted], [y for _, _, y in self.plotted]
            powers, names = power_ticks(min(x for _, x, _ in self.plotted), max(x for _, x, _ in self.plotted))
            plt.scatter(xs, ys, marker="●", color=COLORS[0])
            cells = self.canvas_cells()
            self.marks = crowd_marks(xs, ys, (powers[0], powers[-1]), cells)
            step = (powers[-1] - powers[0]) / (cells[0] - 1)  # one character cell: the mark starts after its point
            for text, x, y in self.marks:
                plt.text(text, x + step, y, alignment="left", color=COLORS[2])
            plt.xlim(powers[0], powers[-1])
            plt.xticks(powers, names)
        self.refresh()

    def canvas_cells(self) -> tuple[int, int]:
        """About how many character cells the points spread over (the widget less its axes' labels)."""
        return max(self.size.width - 12, 10), max(self.size.height - 5, 5)

    def legend(self) -> Text:
        """Each number on the picture and the row it stands for, with its two figures (one line each)."""
        lines = [Text.assemble((f"{i:>2} ", "bold"), label, (f"  {y:.1f}% · {_cost(x, self.shown[1])}", "dim"))
                 for i, (label, x, y) in enumerate(self.plotted, 1)]
        legend = Text("\n").join(lines)
        legend.no_wrap, legend.overflow = True, "ellipsis"
        return legend


def _cost(x: float, axis: str) -> str:
    return f"{x:.3g} h" if axis == "hours" else f"{x:,.0f} params"


def crowd_marks(xs: list[float], ys: list[float], xlim: tuple[float, float], cells: tuple[int, int]):
    """Marks that never overlap: each point's number (1-based) written after it, points whose marks would
    touch on one row of character cells sharing one mark ("1,3"). A point's cell is read from the axis
    ranges and the canvas size. Returns (text, x, y) per mark, at the first of its points."""
    (x0, x1), (width, height) = xlim, cells
    y0, y1 = min(ys), max(ys)

    def cell(x, y):
        return (round((y - y0) / ((y1 - y0) or 1) * (height - 1)),
                round((x - x0) / ((x1 - x0) or 1) * (width - 1)))

    marks: list[list] = []  # [row, first column, last column, numbers, x, y]
    for (row, col), i, x, y in sorted((cell(x, y), i, x, y) for i, (x, y) in enumerate(zip(xs, ys), 1)):
        last = marks[-1] if marks else None
        if last and last[0] == row and col <= last[2] + 1:
            last[3].append(i)
            last[2] = last[1] + len(",".join(map(str, last[3]))) + 1
        else:
            marks.append([row, col, col + len(str(i)) + 1, [i], x, y])
    return [(",".join(map(str, sorted(numbers))), x, y) for _, _, _, numbers, x, y in marks]
