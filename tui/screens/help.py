"""``?``: every screen's keys, read from the screens' own bindings (as nvitop's and harlequin's help)."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = ("Runs launched here keep training when the UI quits; it finds them again when it starts. "
         "Runs started elsewhere (a shell, a sweep) show in Runs and Live as they train.")


def key_name(key: str) -> str:
    return {"slash": "/", "question_mark": "?", "escape": "Esc", "enter": "Enter"}.get(key, key)


def help_table(sections: list[tuple[str, list[Binding]]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", max_width=18)
    table.add_column()
    for title, bindings in sections:
        table.add_row(Text(title, style="bold underline"), "")
        for b in bindings:
            text = b.tooltip or b.description or b.action
            table.add_row(", ".join(key_name(k) for k in b.key.split(",")), text[:1].upper() + text[1:])
    return table


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help { width: 76; max-width: 100%; height: auto; max-height: 100%; border: round $accent;
            background: $surface; padding: 0 1; }
    """

    def __init__(self, sections: list[tuple[str, list[Binding]]], **kwargs):
        super().__init__(**kwargs)
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text(INTRO, style="italic"))
            yield Static(help_table(self.sections))
            yield Static(Text("Esc or ? closes this help", style="dim"))
