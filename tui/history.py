"""The SQL screen's past queries, kept next to the database (``sql-history.jsonl``, one JSON string a
line, oldest first) so that they outlive the UI, as a shell's history does. Standard library only."""
from __future__ import annotations

import json
from pathlib import Path

from .follow import json_lines

HISTORY_FILE = "sql-history.jsonl"
KEEP = 500  # the newest queries kept


def history_path(results_path: Path) -> Path:
    return Path(results_path).parent / HISTORY_FILE


class QueryHistory:
    """Past queries and a position in them for Up/Down: :meth:`back` and :meth:`forward` step through them
    from the newest, and stepping forward past the newest gives back the text being written (the draft)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries = self._load()
        self.position = len(self.entries)  # len(entries): at the draft
        self.draft = ""

    def _load(self) -> list[str]:
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return []
        return json_lines(lines, str)[-KEEP:]

    def add(self, query: str) -> str | None:
        """Remember ``query`` (not twice in a row) and write the file; the position returns to the draft.
        Returns why the file could not be written, if it could not (the query is still remembered)."""
        query, error = query.strip(), None
        if query and (not self.entries or self.entries[-1] != query):
            self.entries = (self.entries + [query])[-KEEP:]
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text("".join(json.dumps(q) + "\n" for q in self.entries))
            except OSError as exc:
                error = f"history not saved: {exc}"
        self.position, self.draft = len(self.entries), ""
        return error

    def back(self, current: str) -> str | None:
        """The query before the one shown (None at the oldest); ``current`` is kept as the draft."""
        if self.position == 0:
            return None
        if self.position == len(self.entries):
            self.draft = current
        self.position -= 1
        return self.entries[self.position]

    def forward(self) -> str | None:
        """The query after the one shown, the draft after the newest; None at the draft."""
        if self.position >= len(self.entries):
            return None
        self.position += 1
        return self.draft if self.position == len(self.entries) else self.entries[self.position]
