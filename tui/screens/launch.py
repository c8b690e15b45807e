"""Launch: pick dataset, backbone, method, seed and the main hyper-parameters; bad values are
shown inline and nothing starts until they are fixed."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from lvmbench import api
from .. import form


INPUTS = ("backbone", "pretrained", "data_root", "seed", *form.HPARAMS, "sets")


def wid(field: str) -> str:
    """The widget id of a form field (ids cannot hold dots)."""
    return field.replace(".", "-")


FIELD_OF = {wid(f): f for f in INPUTS}


def _row(label: str, widget, field: str) -> Horizontal:
    return Horizontal(Label(label, classes="field-label"), widget,
                      Static("", id=f"err-{wid(field)}", classes="field-error"), classes="field")


class LaunchScreen(Screen):
    TITLE = "Launch"
    AUTO_FOCUS = "#dataset"
    BINDINGS = [Binding("ctrl+l", "launch", "Launch run")]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="launch-form"):
            yield Static("Launch a run: [b]lvmbench run --headless[/] in the background "
                         "(empty fields take the default shown)", id="launch-intro")
            yield _row("Dataset", Select([(d, d) for d in api.DATASETS], value="mnist-lt", allow_blank=False,
                                         compact=True, id="dataset"), "dataset")
            yield _row("Backbone", Input("tiny-clip", compact=True, id="backbone",
                                         suggester=SuggestFromList(list(api.BACKBONES))), "backbone")
            yield _row("Pretrained", Input(compact=True, id="pretrained"), "pretrained")
            yield _row("Data root", Input(compact=True, id="data_root"), "data_root")
            yield _row("Method", Select([(m, m) for m in api.METHODS], value="ce", allow_blank=False,
                                        compact=True, id="method"), "method")
            yield Static("", id="method-info")
            yield _row("Seed", Input(compact=True, id="seed", placeholder="0"), "seed")
            for key, label in form.HPARAMS.items():
                yield _row(label, Input(compact=True, id=wid(key)), key)
            yield _row("More settings", Input(compact=True, id="sets", placeholder="key=value … e.g. train.threads=1"),
                       "sets")
            with Horizontal(id="launch-actions"):
                yield Button("Launch", variant="primary", compact=True, id="launch")
                yield Static("", id="launch-message")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.update_defaults()

    # -- form state -------------------------------------------------------------------------------
    def values(self) -> dict[str, str]:
        out = {"dataset": str(self.query_one("#dataset", Select).value),
               "method": str(self.query_one("#method", Select).value)}
        for field in INPUTS:
            out[field] = self.query_one(f"#{wid(field)}", Input).value
        return out

    def update_defaults(self) -> None:
        """Placeholders show what an empty field means for this dataset, method and backbone."""
        values = self.values()
        for key in form.HPARAMS:
            default = form.default_for(key, values["dataset"], values["method"])
            self.query_one(f"#{wid(key)}", Input).placeholder = f"{default}"
        self.query_one("#pretrained", Input).placeholder = (
            f"{form.default_pretrained(values['backbone'])} (a tag or a .pt file)")
        self.query_one("#data_root", Input).placeholder = (
            "(embedded, none needed)" if values["dataset"] == "mnist-lt" else "folder with the dataset")
        info = api.METHODS[values["method"]]
        note = "  Two-stage: a ce stage-1 run is trained (or reused) first." if info.stage == 2 else ""
        self.query_one("#method-info", Static).update(f"{info.summary}.{note}")

    def show_error(self, field: str, error: str | None) -> None:
        self.query_one(f"#err-{wid(field)}", Static).update(Text(error or "", style="red"))
        self.query_one(f"#{wid(field)}").set_class(bool(error), "-invalid")

    def on_input_changed(self, event: Input.Changed) -> None:
        field = FIELD_OF[event.input.id]
        self.show_error(field, form.check(field, event.value))
        if field == "backbone":
            self.update_defaults()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.update_defaults()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_launch()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()

    def action_launch(self) -> None:
        values = self.values()
        request, errors = form.build_request(values)
        for field in values:
            if field not in ("dataset", "method"):
                self.show_error(field, errors.get(field))
        message = self.query_one("#launch-message", Static)
        if request is None:
            message.update(Text(f"fix {len(errors)} field(s) first", style="red"))
            return
        message.update("")
        self.app.launch(request)
