"""The lvmbench terminal UI: Launch · Live · Runs · Compare · SQL.

It never imports torch: it starts ``lvmbench run --headless`` children, follows their run
directories from worker threads, and ingests finished runs (it is the only writer of the database
while it runs). Workers answer with Messages, as in harlequin; files are tailed as in toolong.
"""
from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive

from lvmbench import paths
from lvmbench.errors import UserError
from . import jobs
from .results import Results
from .screens.launch import LaunchScreen

SCREENS = {"launch": ("F1", "Launch", "pick and start a run"),
           "live": ("F2", "Live", "follow running runs; cancel"),
           "runs": ("F3", "Runs", "every stored run; open one"),
           "compare": ("F4", "Compare", "the study's tables; export"),
           "sql": ("F5", "SQL", "read-only queries")}


EVERYWHERE = [Binding("ctrl+p", "command_palette", "Command palette: every screen and action"),
              Binding("tab", "focus_next", "Next field or table (shift+tab: previous)")]


def _lazy(module: str, name: str):
    """A screen factory that imports its module on first use (plotext and DuckDB load after startup)."""
    def make():
        import importlib

        return getattr(importlib.import_module(f".screens.{module}", __package__), name)()

    return make


# the help's sections after Launch: (title, module, class holding the keys)
HELP_SECTIONS = [("Live", "screens.live", "LiveScreen"), ("Runs", "screens.runs", "RunsScreen"),
                 ("Compare", "screens.compare", "CompareScreen"), ("SQL", "screens.sql", "SqlScreen"),
                 ("SQL editor", "screens.sql", "SqlEditor"), ("Run details", "screens.detail", "RunDetailScreen"),
                 ("A question (cancel, start over)", "widgets.dialogs", "Confirm"),
                 ("A list (sort by)", "widgets.dialogs", "Choose")]


class JobFinished(Message):
    def __init__(self, job: jobs.Job, status: str, error: str | None, ingest_error: str | None):
        super().__init__()
        self.job, self.status, self.error, self.ingest_error = job, status, error, ingest_error


class LvmbenchApp(App):
    TITLE = "lvmbench"
    CSS_PATH = "app.tcss"
    MODES = {"launch": LaunchScreen, "live": _lazy("live", "LiveScreen"), "runs": _lazy("runs", "RunsScreen"),
             "compare": _lazy("compare", "CompareScreen"), "sql": _lazy("sql", "SqlScreen")}
    DEFAULT_MODE = "launch"
    # Below WIDE columns the footer names the screens' keys as one "F1-F5 Screens" (the same keys): every
    # footer fits 80 columns; ``?`` and the command palette name each screen.
    BINDINGS = [Binding(key.lower(), f"go('{mode}')", "Screens", key_display="F1-F5", priority=True,
                        show=i == 0, tooltip="F1 Launch, F2 Live, F3 Runs, F4 Compare, F5 SQL")
                for i, (mode, (key, _, _)) in enumerate(SCREENS.items())] + [
        Binding(key.lower(), f"switch_mode('{mode}')", label, priority=True)
        for mode, (key, label, _) in SCREENS.items()] + [
        Binding("question_mark", "help", "Help"), Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit_typing", "Quit", key_display="^q", priority=True,
                tooltip="Quit, from a text field too (where q types a q)")]
    WIDE = 120

    data_version: reactive[int] = reactive(0)  # bumped whenever the database changed

    def __init__(self, results: Path | str | None = None, runs_dir: Path | str | None = None,
                 poll_s: float = 0.5):
        super().__init__()
        self.results = Results(paths.results_path(str(results) if results else None))
        self.runs_dir = paths.runs_dir(str(runs_dir) if runs_dir else None)
        self.poll_s = poll_s
        self.jobs: dict[str, jobs.Job] = {}
        self.live_target: str | None = None
        self.warned_quit = False
        self.adopt_s = 2.0
        self.adopted: set[str] = set()  # runs an earlier UI launched, still training: stored when they end

    def on_mount(self) -> None:
        self.set_interval(self.poll_s, self.check_jobs)
        self.adopt()
        self.set_interval(self.adopt_s, self.adopt)

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for mode, (key, label, help_text) in SCREENS.items():
            yield SystemCommand(f"Go to {label}", f"{help_text} ({key})", lambda m=mode: self.switch_mode(m))

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """The footer leaves out the key of the screen shown, and names the screens' keys as one below
        :attr:`WIDE` columns (so every footer fits 80 columns)."""
        if action == "go":
            return self.size.width < self.WIDE
        if action == "switch_mode":
            return self.size.width >= self.WIDE and parameters != (self.current_mode,)
        if action == "quit_typing":  # shown while q would type: elsewhere ctrl+q is Textual's own, unlisted
            return self.typing()
        return True

    def typing(self) -> bool:
        """Whether the focused widget takes printable keys as text (then ``?`` and ``q`` type)."""
        from textual.widgets import Input, TextArea

        return isinstance(self.focused, (Input, TextArea))

    async def action_quit_typing(self) -> None:
        await self.action_quit()

    def on_resize(self) -> None:
        self.refresh_bindings()

    def action_go(self, mode: str) -> None:
        """F1…F5 below :attr:`WIDE` columns, where the footer names them as one entry."""
        self.switch_mode(mode)

    def action_help(self) -> None:
        """Every screen's keys (``?``)."""
        import importlib

        from .screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        everywhere = [b for b in self.BINDINGS if not b.action.startswith("go(")] + EVERYWHERE
        sections = [("Everywhere", everywhere), ("Launch", LaunchScreen.BINDINGS)]
        for title, module, name in HELP_SECTIONS:
            holder = getattr(importlib.import_module(f".{module}", __package__), name)
            sections.append((title, holder.BINDINGS))
        self.push_screen(HelpScreen([(title, list(b)) for title, b in sections if b]))

    def bump_data(self) -> None:
        self.data_version += 1

    # -- children -----------------------------------------------------------------------------------
    def launch(self, request: jobs.LaunchRequest) -> jobs.Job | None:
        """Start a run in the background and follow it on the Live screen."""
        try:
            job = jobs.start(request, self.runs_dir, self.results.path)
        except OSError as exc:
            self.notify(f"cannot start the run: {exc}", severity="error", markup=False)
            return None
        self.jobs[job.run_id] = job
        self.notify(f"started {job.run_id}", markup=False)
        self.follow(job.run_id)
        return job

    def follow(self, run_id: str) -> None:
        """Show ``run_id`` on the Live screen (any run in the runs folder, whoever started it)."""
        self.live_target = run_id
        self.switch_mode("live")

    def cancel_run(self, run_id: str) -> None:
        """Cancel a run: one this window launched through its ``lvmbench run`` child, any other local
        run of this user through its owner (``lvmbench.runs.process.request_cancel``)."""
        from lvmbench.runs import process
        from lvmbench.runs.rundir import DONE, RunDir

        job = self.jobs.get(run_id)
        if job is not None and job.proc.poll() is None and jobs.state(job)[0] not in DONE:
            jobs.cancel(job)
            self.notify(f"cancelling {run_id}…", markup=False)
            return
        refused = process.request_cancel(RunDir(self.runs_dir / run_id))
        if refused:
            self.notify(f"cannot cancel: {refused}", severity="warning", markup=False)
        else:
            self.notify(f"cancelling {run_id}…", markup=False)

    def confirm_cancel(self, run_id: str) -> None:
        """Cancel ``run_id`` once the user says yes (``c`` on Runs and Live, as htop asks before a kill)."""
        from lvmbench.runs.rundir import DONE, RunDir

        from .widgets.dialogs import Confirm

        status = RunDir(self.runs_dir / run_id).status().get("status")
        if status in DONE:
            self.notify(f"{run_id} has already ended ({status}): nothing to cancel", severity="warning", markup=False)
            return
        self.push_screen(Confirm(f"Cancel {run_id}? Its training process stops and the run is recorded "
                                 f"cancelled (resumable from its last checkpoint)."),
                         lambda yes: yes and self.cancel_run(run_id))

    def running_jobs(self) -> list[str]:
        return [run_id for run_id, job in self.jobs.items() if job.proc.poll() is None]

    async def action_quit(self) -> None:
        """Quit; runs launched from here go on training (said once, then ``q`` again quits)."""
        running = self.running_jobs()
        if running and not self.warned_quit:
            self.warned_quit = True
            self.notify(f"{len(running)} run(s) launched here go on training after you quit; lvmbench finds "
                        f"them again when it starts. Press q again to quit.", severity="warning", timeout=10)
            return
        self.exit(running)

    def check_jobs(self) -> None:
        for job in list(self.jobs.values()):
            if job.ended:
                continue
            jobs.enforce_cancel(job)
            if job.proc.poll() is not None:
                job.ended = True
                self.finish_job(job)

    @work(thread=True, exclusive=True, group="adopt")
    def adopt(self) -> None:
        """Find the runs an earlier UI launched (``lvmbench run --no-ingest``: the UI stores them) and
        store each when it ends, as if this window had launched it."""
        from lvmbench.runs.rundir import ACTIVE, RunDir, list_runs

        for run in list_runs(self.runs_dir):
            status = run.status()
            if run.run_id in self.jobs or status.get("stored_by") != "caller":
                continue
            if status.get("status") in ACTIVE:
                self.adopted.add(run.run_id)
        ended = [r for r in map(lambda r: RunDir(self.runs_dir / r), sorted(self.adopted))
                 if not jobs.recovered_alive(r)]
        if not ended:
            return
        self.adopted -= {r.run_id for r in ended}
        try:
            self.results.ingest([r for r in ended if not r.status().get("user_error")])
        except UserError as exc:
            self.call_from_thread(self.notify, f"not stored: {exc}", severity="error", markup=False)
            return
        self.call_from_thread(self.bump_data)

    @work(thread=True, group="ingest")
    def finish_job(self, job: jobs.Job) -> None:
        """Ingest what a finished child left (its run, and a stage-1 run it trained)."""
        ingest_error = None
        try:
            self.results.ingest(jobs.runs_to_ingest(job, self.runs_dir))
        except UserError as exc:
            ingest_error = str(exc)
        status, error = jobs.state(job)
        self.post_message(JobFinished(job, status, error, ingest_error))

    def on_job_finished(self, message: JobFinished) -> None:
        error = message.error if not message.error or len(message.error) < 160 else message.error[:157] + "…"
        text = f"{message.job.run_id}: {message.status}" + (f" ({error})" if error else "")
        self.notify(text, severity="information" if message.status == "finished" else "error",
                    timeout=10, markup=False)
        if message.ingest_error:
            self.notify(f"not stored: {message.ingest_error}", severity="error", timeout=10, markup=False)
        self.bump_data()


def main() -> int:
    running = LvmbenchApp().run()
    if running:
        print(f"still training (not tied to the UI): {', '.join(running)}; open lvmbench to follow them")
    return 0
