"""The Textual terminal UI (installed as ``lvmbench.tui``). It never imports torch."""
