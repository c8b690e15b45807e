"""Open the terminal UI (kept apart so the CLI does not import Textual for other commands)."""
from __future__ import annotations


def run_tui() -> int:
    from .tui.app import main

    return main() or 0
