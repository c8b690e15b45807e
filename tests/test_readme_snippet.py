"""The README's notebook snippet runs as written with what lvmbench installs (no pandas, no Polars)."""
from __future__ import annotations

import re
from pathlib import Path

from lvmbench import cli, config
from lvmbench.store import open_writer
from lvmbench.store.ingest import ingest_dir

from .conftest import finish

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_notebook_snippet_runs_on_an_export(tmp_path, monkeypatch, capsys):
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "IMPORT DATABASE" in b)
    finish(tmp_path / "runs", config.resolve("mnist-lt", "tiny-clip", "ce"), overall=61.0)
    with open_writer(tmp_path / "r.duckdb") as con:
        ingest_dir(con, tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["export", "snapshot", "--results", str(tmp_path / "r.duckdb")]) == 0
    capsys.readouterr()
    exec(compile(snippet, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "ce" in out and "61.0" in out and "'overall'" in out
