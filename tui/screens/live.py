"""Live: plots that update while a run trains, read from its run directory by a worker thread
(loss and lr, val accuracy, memory and power), a progress bar with ETA, the log tail, cancel.

Each plot gets at least :data:`MIN_PLOT_ROWS` rows: where the four do not fit as a 2×2 grid (80×24)
one shows at a time and ``v`` shows the next; on a tall terminal ``v`` also enlarges one of them.
Each plot's legend is a line under it, never over the curves."""
from __future__ import annotations

import threading
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Log, ProgressBar, Select, Static

from lvmbench.runs import process
from lvmbench.runs.rundir import ACTIVE, RunDir, list_runs
from .. import jobs
from ..follow import LiveData, RunFollower, RunUpdate, format_seconds
from ..widgets.plots import SeriesPlot


PLOTS = [("loss", "loss · lr", "step"), ("val", "val accuracy (%)", "step"), ("mem", "memory (MiB)", "seconds"),
         ("power", "GPU power (W)", "seconds")]
MIN_PLOT_ROWS = 8  # a plot's canvas below this is unreadable


class LiveUpdate(Message):
    def __init__(self, update: RunUpdate, state: tuple[str, str | None]):
        super().__init__()
        self.update, self.state = update, state


class ActiveRuns(Message):
    """Run ids found running in the runs directory (launched by this UI or elsewhere)."""

    def __init__(self, run_ids: list[str]):
        super().__init__()
        self.run_ids = run_ids


def discovered_state(run: RunDir) -> tuple[str, str | None]:
    """The state of a run this UI did not launch; a running one whose process is gone is recorded
    ``killed`` (``lvmbench.runs.process.recover``)."""
    status = process.recover(run)
    return status.get("status", "queued"), status.get("error")


def loader_wait_text(data: LiveData) -> str:
    """`` · loader wait 12 ms/step (40%)``: how long each step waits for its images (``table cost``'s
    figure, live); empty when the run logs none (no loader: cached training views)."""
    wait = data.loader_wait()
    if wait is None:
        return ""
    seconds, share = wait
    return f" · loader wait {seconds * 1000:.0f} ms/step" + (f" ({share:.0%})" if share is not None else "")


class LiveScreen(Screen):
    TITLE = "Live"
    BINDINGS = [Binding("c", "cancel", "Cancel", tooltip="cancel the run shown (asks first)"),
                Binding("n", "cycle(1)", "Next run"), Binding("p", "cycle(-1)", "Prev run"),
                Binding("v", "next_view", "Next plot", tooltip="the next plot (or all four, where they fit)")]

    def __init__(self, poll_s: float = 0.5, scan_s: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.poll_s, self.scan_s = poll_s, scan_s
        self.run_ids: list[str] = []
        self.current: str | None = None
        self.follower: RunFollower | None = None
        self.data: LiveData | None = None
        self.state: tuple[str, str | None] = ("", None)
        self._poll_lock = threading.Lock()  # one poll at a time: a follower keeps file offsets
        self.view: int | None = None  # the index in PLOTS of the one plot shown; None: all four
        self.chosen_view = False  # ``v`` was pressed: a resize keeps the user's choice

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="live-top"):
            yield Select([], prompt="no run", compact=True, id="run-select")
            yield Static("", id="run-state")
        yield Static("No run in progress: launch one from the Launch screen (F1).", id="live-empty")
        with Vertical(id="live-body"):
            with Horizontal(id="progress-row"):
                yield ProgressBar(total=1, show_eta=False, id="progress")
                yield Static("", id="progress-text")
            yield Static("", id="run-error")
            with Grid(id="plots"):
                for key, title, xlabel in PLOTS:
                    with Vertical(classes="plot-panel", id=f"panel-{key}"):
                        yield SeriesPlot(title, xlabel, id=f"plot-{key}")
                        yield Static("", classes="legend", id=f"legend-{key}")
            yield Log(max_lines=500, id="log")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#live-body").display = False
        self.fit_view()
        self.set_interval(self.poll_s, self.poll)
        self.set_interval(self.scan_s, self.scan)
        self.scan()

    def on_screen_resume(self) -> None:
        target = getattr(self.app, "live_target", None)
        if target:
            self.app.live_target = None
            self.add_runs([target])
            self.select(target)
        self.scan()

    # -- which plots ------------------------------------------------------------------------------------
    def grid_fits(self) -> bool:
        """Whether four plots in a 2×2 grid get :data:`MIN_PLOT_ROWS` rows each (title, axes and legend
        take 5 more rows per plot) next to the header, progress row and log."""
        return (self.size.height - 11) // 2 - 5 >= MIN_PLOT_ROWS

    def on_resize(self) -> None:
        self.fit_view()

    def fit_view(self) -> None:
        if self.view is None and not self.grid_fits():
            self.view = 0
        elif self.view is not None and not self.chosen_view and self.grid_fits():
            self.view = None
        self.show_view()

    def show_view(self) -> None:
        self.query_one("#plots").set_class(self.view is not None, "single")
        for i, (key, _, _) in enumerate(PLOTS):
            self.query_one(f"#panel-{key}").display = self.view in (None, i)

    def action_next_view(self) -> None:
        """``v``: the next plot; after the last, all four where they fit, else the first again."""
        self.chosen_view = True
        if self.view is None:
            self.view = 0
        elif self.view + 1 < len(PLOTS):
            self.view += 1
        else:
            self.view = None if self.grid_fits() else 0
        self.show_view()

    # -- which runs ---------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="live-scan")
    def scan(self) -> None:
        runs_dir = self.app.runs_dir
        found = [r.run_id for r in list_runs(runs_dir) if r.status().get("status") in ACTIVE]
        self.post_message(ActiveRuns(found))

    def on_active_runs(self, message: ActiveRuns) -> None:
        self.add_runs(list(self.app.jobs) + message.run_ids)

    def add_runs(self, run_ids: list[str]) -> None:
        new = [r for r in dict.fromkeys(run_ids) if r not in self.run_ids]
        if not new:
            return
        self.run_ids = sorted(self.run_ids + new, reverse=True)
        select = self.query_one("#run-select", Select)
        with self.prevent(Select.Changed):
            select.set_options([(r, r) for r in self.run_ids])
            if self.current:
                select.value = self.current
        if self.current is None:
            self.select(self.run_ids[0])

    def select(self, run_id: str) -> None:
        if run_id == self.current:
            return
        self.current = run_id
        self.follower = RunFollower(RunDir(Path(self.app.runs_dir) / run_id))
        self.data = LiveData(run_id)
        self.state = ("", None)
        select = self.query_one("#run-select", Select)
        if select.value != run_id:
            with self.prevent(Select.Changed):
                select.value = run_id
        self.query_one("#live-empty").display = False
        self.query_one("#live-body").display = True
        self.query_one(Log).clear()
        self.redraw(full=True)
        self.poll()

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.select(event.value)

    def action_cycle(self, step: int) -> None:
        if self.run_ids and self.current in self.run_ids:
            self.select(self.run_ids[(self.run_ids.index(self.current) + step) % len(self.run_ids)])

    # -- following the selected run -----------------------------------------------------------------
    @work(thread=True, exclusive=True, group="live-poll")
    def poll(self) -> None:
        follower = self.follower
        if follower is None or not self._poll_lock.acquire(blocking=False):
            return
        try:
            update = follower.poll()
            job = self.app.jobs.get(follower.run.run_id)
            state = jobs.state(job) if job else discovered_state(follower.run)
        finally:
            self._poll_lock.release()
        if update or state != self.state:
            self.post_message(LiveUpdate(update, state))

    def on_live_update(self, message: LiveUpdate) -> None:
        if self.data is None or message.update.run_id != self.data.run_id:
            return
        self.data.apply(message.update)
        self.state = message.state
        if message.update.log:
            self.query_one(Log).write_lines(message.update.log)
        self.redraw(full=bool(message.update.metrics or message.update.system))

    def redraw(self, full: bool) -> None:
        data, (status, error) = self.data, self.state
        if data is None:
            return
        self.query_one("#run-state", Static).update(Text(status or "…", style="bold"))
        bar = self.query_one(ProgressBar)
        bar.update(total=data.iters, progress=data.step)  # no length yet: an indeterminate bar
        eta = data.eta_s() if status == "running" else None
        self.query_one("#progress-text", Static).update(
            f"step {data.step}/{data.iters} · ETA {format_seconds(eta)}{loader_wait_text(data)}" if data.iters
            else f"{status or 'starting'}… (no step yet)")
        self.query_one("#run-error", Static).update(Text(f"{status}: {error}" if error else "", style="red"))
        self.query_one("#run-error").display = bool(error)
        self.query_one("#live-body").set_class(bool(error), "has-error")  # a shorter log: the plot keeps its rows
        if not full:
            return
        steps = (0, data.iters) if data.iters else None
        self.query_one("#plot-loss", SeriesPlot).show([("loss", data.loss, "left"), ("lr", data.lr, "right")],
                                                      xlim=steps)
        self.query_one("#plot-val", SeriesPlot).show([("overall", data.val_overall, "left"),
                                                      ("few", data.val_few, "left")], xlim=steps)
        mem_title = "GPU memory (MiB)" if data.gpu else "process memory (MiB)"
        self.query_one("#plot-mem", SeriesPlot).show([("MiB", data.mem, "left")], title=mem_title)
        on_cpu = data.mem.x and not data.gpu
        self.query_one("#plot-power", SeriesPlot).show(
            [("W", data.power, "left")], title="power (W): no GPU, not measured" if on_cpu else "GPU power (W)",
            empty="" if on_cpu else "waiting for data")
        for key, _, _ in PLOTS:
            self.query_one(f"#legend-{key}", Static).update(self.query_one(f"#plot-{key}", SeriesPlot).legend())

    # -- cancel -------------------------------------------------------------------------------------
    def action_cancel(self) -> None:
        if self.current:
            self.app.confirm_cancel(self.current)
