"""Replay hand-written bugs that would corrupt a published table, one at a time, and check that the
focused tests catch each (``make mutate``, part 2; TESTING.md says why this list exists).

Each bug replaces one exact piece of source text. When the text is no longer in the file, the bug is
reported STALE: update its ``old``/``new`` to what the code says now, so the list keeps testing the
same mistake. The file is always restored, also on Ctrl-C.

    python scripts/replay_bugs.py            # every bug
    python scripts/replay_bugs.py no_warmup  # some of them, by name
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIRING = "tests/test_loop_wiring.py::"
SCHEDULE = [WIRING + "test_the_logged_learning_rate_follows_the_schedule_step_by_step"]
DECAY = [WIRING + "test_weight_decay_spares_biases_and_norms_in_the_optimizer_the_run_used",
         WIRING + "test_the_optimizer_summary_names_each_groups_parameters_and_decay"]
SELECTION = [WIRING + "test_the_evaluated_weights_are_the_best_on_validation"]
RESUME = [WIRING + "test_a_resumed_run_keeps_the_best_it_had_before_the_kill"]
BALANCED = [WIRING + "test_a_class_balanced_run_trains_on_class_balanced_batches"]
IDENTITY = ["tests/test_identity.py::test_every_setting_that_changes_results_changes_the_config_hash"]
FUSED = "tests/test_fused.py::"
HASH_BODY = "k not in NOT_HASHED and k not in NOT_CONFIG and k not in ignore}"


@dataclass(frozen=True)
class Bug:
    file: str
    old: str
    new: str
    tests: list[str]
    what: str


def hash_without(key: str) -> Bug:
    return Bug("lvmbench/config.py", HASH_BODY, HASH_BODY.replace("k not in ignore}", f'k not in ignore and k != "{key}"}}'),
               IDENTITY,
               f"{key} left out of the config hash")


BUGS = {
    "no_warmup": Bug("lvmbench/train/loop.py", 's, spec["train.warmup_iters"], spec["train.iters"]',
                     's, 0, spec["train.iters"]', SCHEDULE, "fit() builds its scheduler without the warm-up"),
    "decay_on_biases_and_norms": Bug("lvmbench/train/loop.py", '{"params": no_decay, "weight_decay": 0.0}',
                                     '{"params": no_decay, "weight_decay": spec["train.weight_decay"]}', DECAY,
                                     "weight decay applied to biases and norm weights"),
    "evaluate_final_weights": Bug("lvmbench/train/loop.py",
                                  '            checkpoint.load_model_state(self.task.model, self.best["state"])\n',
                                  "            pass\n", SELECTION, "the final, not the best-on-validation, weights evaluated"),
    "select_on_test": Bug("lvmbench/train/loop.py", "result = self.evaluate(select)",
                          'result = self.evaluate("test")', SELECTION,
                          "the checkpoint chosen on the test split, recorded as chosen on val"),
    "forget_best_on_resume": Bug("lvmbench/train/loop.py", 'best = resumed["best"] if resumed else',
                                 'best = {"val_overall": -1.0, "step": None, "state": None} if resumed else', RESUME,
                                 "the best-so-far forgotten on resume"),
    "loop_ignores_balanced": Bug("lvmbench/train/loop.py", 'spec["train.batch_size"], leader.task.sampler, spec["seed"]',
                                 'spec["train.batch_size"], "instance", spec["seed"]',
                                 BALANCED,
                                 "the loop builds an instance sampler for a class-balanced run"),
    "batches_ignore_balanced": Bug("lvmbench/train/batches.py", "        self._balanced = None\n",
                                   "        self._balanced = None\n        kind = 'instance'\n",
                                   BALANCED,
                                   "the step batch sampler ignores 'balanced'"),
    "study_sampler_is_uniform": Bug("lvmbench/train/batches.py", 'if kind == "balanced" and balanced == "study":',
                                    'if kind == "never":', BALANCED,
                                    "recipe=paper draws classes uniformly instead of the study's weighted sampler"),
    "hash_without_weight_decay": hash_without("train.weight_decay"),
    "hash_without_loss": hash_without("loss"),
    "hash_without_cache_views": hash_without("cache.views"),
    "cache_key_without_weights": Bug("lvmbench/train/loop.py", '"weights": cache.weights_fingerprint(weights.source),', "",
                                     ["tests/test_identity.py::test_the_cache_key_changes_with_weights_backbone_preprocessing_split_and_precision"],
                                     "the Trainer's feature-cache key leaves out the weights"),
    "evals_few_integer": Bug("lvmbench/store/schema.py", "few DOUBLE", "few INTEGER",
                             ["tests/test_store.py", "tests/test_store_types.py"], "evals.few stored as an integer"),
    "runs_screen_shows_val": Bug("tui/results.py", "LEFT JOIN evals e ON e.run_id = r.run_id AND e.split = 'test'",
                                 "LEFT JOIN evals e ON e.run_id = r.run_id AND e.split = 'val'",
                                 ["tests/tui/test_values.py"], "the Runs screen shows validation figures"),
    # issue 26: one replayed bug per group of the second audit
    "fused_input_time_charged_whole": Bug("lvmbench/train/loop.py",
                                          "shared = (time.perf_counter() - t_in) / max(len(due), 1)",
                                          "shared = time.perf_counter() - t_in",
                                          [FUSED + "test_a_members_training_time_holds_its_part_of_the_shared_input_time"],
                                          "every member of a fused group charged the whole shared input time"),
    "recipe_dropped_before_build_loss": Bug("lvmbench/methods/build.py",
                                            'build_loss(spec["loss"], dataset.train_counts, recipe, **',
                                            'build_loss(spec["loss"], dataset.train_counts, **',
                                            ["tests/test_engine.py::test_a_runs_recipe_reaches_its_loss"],
                                            "the run's recipe dropped between the registry and build_loss"),
    "adaptformer_in_series": Bug("lvmbench/models/peft.py", 'out = out + mods["adaptformer"](x)',
                                 'out = out + mods["adaptformer"](out)',
                                 ["tests/test_lift.py::test_a_trained_peft_tower_computes_what_its_method_defines"],
                                 "AdaptFormer placed in series after the MLP instead of parallel to it"),
    "rerun_seed_averaged_twice": Bug("lvmbench/store/tables.py", 'latest[(run["group"], run["seed"])] = run',
                                     'latest[run["run_id"]] = run',
                                     ["tests/test_tables.py::test_a_cell_averages_seeds_of_one_config_only"],
                                     "a re-run seed averaged with the run it replaces"),
    "append_deletes_earlier_lines": Bug("lvmbench/store/ingest.py", 'f"WHERE replace_{log})")', 'f")")',
                                        ["tests/test_ingest.py::test_each_ingest_of_a_running_run_keeps_every_line_it_stored_before"],
                                        "ingest of a running run's new lines deletes the lines stored before"),
    "cache_key_from_python_hash": Bug("lvmbench/train/cache.py",
                                      "return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]",
                                      "return str(abs(hash(json.dumps(parts, sort_keys=True))))",
                                      ["tests/test_cache.py::test_the_key_changes_with_every_part_of_the_identity"],
                                      "a feature-cache key that differs between processes (Python's salted hash)"),
}


def replay(name: str, bug: Bug) -> str:
    path = ROOT / bug.file
    source = path.read_text()
    if source.count(bug.old) != 1:
        return "STALE"
    path.write_text(source.replace(bug.old, bug.new))
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *bug.tests],
                              cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        path.write_text(source)
    if done.returncode == 1:
        failed = [line.split(" ")[1] for line in done.stdout.splitlines() if line.startswith("FAILED")]
        return f"caught by {', '.join(failed) or 'a failing test'}"
    return "SURVIVED" if done.returncode == 0 else f"ERROR (pytest exit {done.returncode})"


def main(names: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped replay still restores the file
    unknown = [n for n in names if n not in BUGS]
    if unknown:
        print(f"unknown bug {', '.join(unknown)}; choose from {', '.join(BUGS)}")
        return 2
    bad = 0
    for name in names or list(BUGS):
        start = time.monotonic()
        verdict = replay(name, BUGS[name])
        bad += not verdict.startswith("caught")
        print(f"{name} ({BUGS[name].what}): {verdict} [{time.monotonic() - start:.0f} s]", flush=True)
    print(f"{bad} of {len(names or BUGS)} bugs not caught" if bad else "every bug caught")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
