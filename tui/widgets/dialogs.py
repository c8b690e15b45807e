"""Small modal questions: a yes/no confirmation (as htop and nvitop ask before they signal a process)
and a choice from a list (as htop's "Sort by")."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: {width}; max-width: 100%; height: auto; max-height: 90%; border: round $warning;
                    background: $surface; padding: 0 1; }}
"""


class Confirm(ModalScreen[bool]):
    """``question``, answered with ``y`` (or Enter) or ``n`` (or Esc); dismissed with the answer."""

    BINDINGS = [Binding("y,enter", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]
    DEFAULT_CSS = DIALOG_CSS.format(name="Confirm", width=64)

    def __init__(self, question: str, **kwargs):
        super().__init__(**kwargs)
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.question), id="question")
            yield Static(Text.assemble(("y", "bold"), " yes   ", ("n", "bold"), " / Esc no"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class Choose(ModalScreen[int | None]):
    """Pick one of ``options`` (Enter, or its first letter's row); dismissed with its index, None on Esc."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]
    DEFAULT_CSS = DIALOG_CSS.format(name="Choose", width=32)

    def __init__(self, title: str, options: list[str], current: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.title_text, self.options, self.current = title, options, current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text, style="bold"))
            yield OptionList(*[Text(o) for o in self.options], id="choices")

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = self.current or 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option_index)
