"""Where a run's settings come from: a TOML file (``run --config FILE``), a stored run (``run --from RUN_ID``).

A settings file holds the run's identity (``dataset``, ``backbone``, ``method``, ``seed``,
``pretrained``, ``data_root``) and any ``--set`` key, flat (``"train.lr" = 0.01``) or as TOML tables
(``[train]`` ``lr = 0.01``). Layers apply in order: built-in defaults, the stored run (``--from``),
the file (``--config``), then the command line (flags and ``--set``), so the command line wins.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULTS: dict[str, Any] = {k: p.default for k, p in config.IDENTITY.items()}
# Written by lvmbench into a run's spec.json, not chosen by the user.
BOOKKEEPING = ("config_hash", "git_sha", "sweep_id")


@dataclass
class Request:
    """What to run: the identity arguments of ``config.resolve`` and the ``--set`` overrides."""

    identity: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    overrides: dict[str, Any] = field(default_factory=dict)

    def resolve(self) -> dict[str, Any]:
        return config.resolve(overrides=dict(self.overrides), **self.identity)


def _flatten(table: dict, where: str, prefix: str = "", seen: dict[str, str] | None = None) -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` → ``{"train.lr": 1}``; a key written twice (flat and in a table) is refused."""
    out, seen = {}, {} if seen is None else seen
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, where, name + ".", seen))
            continue
        spelled = f'"{name}"' if "." in key else (f"{key} in [{prefix[:-1]}]" if prefix else name)
        if name in seen:
            raise UserError(f"{where}: {name} is given twice ({seen[name]} and {spelled}); give each key once")
        seen[name], out[name] = spelled, value
    return out


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def split_identity(values: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate identity keys from ``--set`` keys and parse the latter (errors name ``where``)."""
    identity = {k: values.pop(k) for k in list(values) if k in DEFAULTS}
    try:
        config.check_identity(identity)
    except UserError as exc:
        raise UserError(f"{where}: {str(exc).replace('--seed ', 'seed=')}") from None
    for key, value in values.items():
        if isinstance(value, list):
            raise UserError(f"{where}: {key} is a list; a run takes one value (sweep over lists with "
                            f"lvmbench sweep --set {key}=a,b)")
    try:
        overrides = {k: config.typed_value(k, v) for k, v in values.items() if k in config.SCHEMA}
        overrides.update(config.parse_sets([f"{k}={_text(v)}" for k, v in values.items() if k not in config.SCHEMA]))
    except UserError as exc:
        raise UserError(f"{where}: {str(exc).replace('--set ', '')}") from None
    return identity, overrides


def load_file(path: str | Path) -> Request:
    """The identity and settings of a TOML settings file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"--config {path}: is a folder, not a TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--config {path}: not valid TOML: {str(exc).splitlines()[0]}") from None
    identity, overrides = split_identity(_flatten(data, str(path)), str(path))
    return Request(identity, overrides)


def stored_spec(run_id: str, runs_dir: Path, results: Path) -> dict[str, Any]:
    """A run's spec: from its directory, else from the results database."""
    from .runs.rundir import check_id_form

    check_id_form(run_id, "--from")
    spec_file = Path(runs_dir) / run_id / "spec.json"
    if spec_file.exists():
        return json.loads(spec_file.read_text())
    if Path(results).exists():
        from .store import open_readonly

        with open_readonly(results) as con:
            row = con.execute("SELECT config FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row:
            return json.loads(row[0])
    raise UserError(f"--from {run_id}: no such run in {runs_dir} or {results}")


def from_run(run_id: str, runs_dir: Path, results: Path) -> tuple[Request, dict[str, Any]]:
    """The exact request that produced a stored run, and the settings it chose itself: those that
    differ from what its dataset, method and recipe would give (what carries over to another method
    or recipe, whose own defaults then apply)."""
    spec = stored_spec(run_id, runs_dir, results)
    identity = {k: spec.get(k, DEFAULTS[k]) for k in DEFAULTS}
    overrides = {k: v for k, v in spec.items()
                 if k not in DEFAULTS and k not in BOOKKEEPING and (k in config.SCHEMA or k.startswith("loss."))}
    fixed = {k: overrides[k] for k in ("recipe",) if k in overrides}
    try:
        defaults = config.resolve(overrides=dict(fixed), **identity)
    except UserError:
        return Request(identity, overrides), overrides
    chosen = {k: v for k, v in overrides.items() if k not in defaults or defaults[k] != v}
    return Request(identity, overrides), {**fixed, **chosen}


# Flags and keys whose change brings another set of defaults (dataset, method and recipe profiles).
PROFILE_KEYS = ("dataset", "backbone", "pretrained", "method", "recipe")


def compose(flags: dict[str, Any], sets: list[str], config_file: str | None = None, from_id: str | None = None,
            runs_dir: Path | None = None, results: Path | None = None) -> Request:
    """Layer the stored run, the settings file and the command line (flags left None were not given)."""
    request, chosen = Request(), {}
    if from_id is not None:  # an empty id is refused, never a fresh run
        request, chosen = from_run(from_id, runs_dir, results)
    layer = load_file(config_file) if config_file else Request({}, {})
    given_sets = config.parse_sets(sets)
    new_identity = {**layer.identity, **{k: v for k, v in flags.items() if v is not None}}
    changed = {k for k, v in new_identity.items() if v != request.identity.get(k)}
    changed |= {k for k in ("recipe",) if k in {**layer.overrides, **given_sets}
                and {**layer.overrides, **given_sets}[k] != request.overrides.get(k)}
    if from_id is not None and changed & set(PROFILE_KEYS):
        request.overrides = dict(chosen)  # the new method's (dataset's, recipe's) defaults apply
    if from_id is not None and (changed or config_file or given_sets) and "stage1.run_id" not in given_sets:
        # a changed run trains on (or finds) the stage-1 run that matches it, not the stored run's parent
        request.overrides["stage1.run_id"] = None
    request.identity.update(new_identity)
    request.overrides.update(layer.overrides)
    request.overrides.update(given_sets)
    return request
