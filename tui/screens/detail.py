"""One stored run: status, evaluation, per-class accuracy by shot group, cost, config."""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static

from lvmbench.api import UserError, fmt, shot_group
from ..results import RunDetail, run_detail
from ..widgets.table import ResultTable

COST_FIELDS = [("device", "device"), ("gpu_name", "GPU"), ("iters", "iterations"), ("batch_size", "batch size"),
               ("wall_s", "wall (s)"), ("s_per_iter", "s/iter"), ("peak_mem_mib", "peak memory (MiB)"),
               ("avg_power_w", "average power (W)"), ("energy_kwh", "energy (kWh)"), ("co2_kg", "CO2 (kg)"),
               ("trainable_params", "trainable params"), ("total_params", "total params")]


class DetailLoaded(Message):
    def __init__(self, detail: RunDetail | None, groups: list[list] | None = None, error: str | None = None):
        super().__init__()
        self.detail, self.groups, self.error = detail, groups, error


def shot_group_rows(per_class_rows: list[list]) -> tuple[list[list], list[list]]:
    """Per-class rows (class_id, name, n_train, acc) with their shot group, and each group's summary
    (group, classes, mean accuracy); groups as in the evaluation (``lvmbench.shots``)."""
    rows = [[shot_group(r[2]), r[1], r[2], r[3]] for r in per_class_rows]
    summary = []
    for group in ("many", "medium", "few"):
        accs = [r[3] for r in rows if r[0] == group and r[3] is not None]
        if any(r[0] == group for r in rows):
            summary.append([group, sum(r[0] == group for r in rows), sum(accs) / len(accs) if accs else None])
    return rows, summary


class RunDetailScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, run_id: str, **kwargs):
        super().__init__(**kwargs)
        self.run_id = run_id
        self.sub_title = run_id

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="detail"):
            yield Static("loading…", id="detail-head")
            yield Label("Evaluation (%)", classes="section")
            yield ResultTable(id="detail-evals", classes="auto")
            yield Label("Per shot group (test)", classes="section")
            yield ResultTable(id="detail-groups", classes="auto")
            yield Label("Per class (test)", classes="section")
            yield ResultTable(id="detail-classes", classes="auto")
            yield Label("Cost", classes="section")
            yield ResultTable(id="detail-cost", classes="auto")
            yield Label("Config", classes="section")
            yield ResultTable(id="detail-config", classes="auto")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.load()

    @work(thread=True)
    def load(self) -> None:
        try:
            detail = run_detail(self.app.results, self.run_id)
        except UserError as exc:
            self.post_message(DetailLoaded(None, error=str(exc)))
            return
        groups = shot_group_rows(detail.per_class.rows) if detail else None
        self.post_message(DetailLoaded(detail, groups))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        head = self.query_one("#detail-head", Static)
        if message.detail is None:
            head.update(Text(message.error or f"run {self.run_id} is not in the database", style="red"))
            return
        d = message.detail
        r = d.run
        from lvmbench.api import describe_classes  # numpy: loaded when a detail shows, not at startup

        classes = f"\n{describe_classes(d.config)}" if "classes.total" in d.config else ""
        head.update(Text.assemble((self.run_id, "bold"), f" · {r['status']} · {r['dataset']} · {r['backbone']} "
                                  f"({r['pretrained']}) · {r['method']} · seed {r['seed']}{classes}",
                                  (f"\n{r['error']}" if r.get("error") else "", "red")))
        self.query_one("#detail-evals", ResultTable).show(d.evals.columns, d.evals.rows)
        rows, summary = message.groups
        self.query_one("#detail-groups", ResultTable).show(["group", "classes", "mean accuracy"], summary)
        self.query_one("#detail-classes", ResultTable).show(["group", "class", "n_train", "accuracy"], rows)
        self.query_one("#detail-cost", ResultTable).show(
            ["key", "value"], [[label, fmt(r.get(key))] for key, label in COST_FIELDS])
        self.query_one("#detail-config", ResultTable).show(
            ["key", "value"], [[k, fmt(v)] for k, v in sorted(d.config.items())])
