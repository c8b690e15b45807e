"""The UI never imports torch, not even through the modules it loads later (evaluation, DuckDB)."""
from __future__ import annotations

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import lvmbench.tui
names = [m.name for m in pkgutil.walk_packages(lvmbench.tui.__path__, "lvmbench.tui.")]
for name in names:
    importlib.import_module(name)
import lvmbench.evaluate  # imported lazily by the run detail screen
import lvmbench.store.ingest, lvmbench.store.tables  # imported lazily by workers
from lvmbench.tui.app import LvmbenchApp
LvmbenchApp()
assert len(names) >= 12, names
print("torch" in sys.modules, len(names))
"""


def test_importing_every_tui_module_leaves_torch_out():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded, count = out.stdout.split()
    assert loaded == "False", f"torch was imported by the UI ({count} modules)"
