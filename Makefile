# `make run` and `make test` set everything up on a fresh machine: .venv from the exact lock.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench mutate mutate-new clean-venv

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# The embedded benchmark (tiny-clip on mnist-lt), headless, then the paper-style table.
run: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lvmbench demo

# The suite in parallel (pytest-xdist): one worker per core, at most 4, each test file on one worker so that
# its module-scoped trained fixtures train once. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= logical
test: $(STAMP)
	CUDA_VISIBLE_DEVICES= HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

# Mutation testing (about 9 minutes on 2 cores; not part of `make test`): mutmut over the modules where a
# bug corrupts numbers, then the hand-written wiring bugs of scripts/replay_bugs.py. See TESTING.md.
MUTATE := "lvmbench.methods.*" "lvmbench.evaluate.*" "lvmbench.data.samplers.*" "lvmbench.train.batches.*" \
	"lvmbench.config.x_config_hash*" "lvmbench.config.x_resolve*" "lvmbench.config.x_validate*" \
	"lvmbench.config.x_loss_hparams*" "lvmbench.store.ingest.*" "lvmbench.train.loop.x_lr_factor*" \
	"lvmbench.train.loop.x_build_optimizer*" "lvmbench.train.loop.x_optimizer_summary*"
# issue 26: the newer code (TESTING.md, "Second audit"); `make mutate-new` runs these alone, one module at a
# time in this order (what feeds the tables first), so that a run stopped early has whole modules to show
MUTATE_NEW := "lvmbench.store.export.*" "lvmbench.store.tables.*" "lvmbench.train.tte.*" "lvmbench.methods.lift.*" \
	"lvmbench.models.peft.*" "lvmbench.train.loop.x_fit_group*" "lvmbench.train.loop.xǁTrainerǁgroup*" \
	"lvmbench.store.sources.*" "lvmbench.weights.*" "lvmbench.store.mlflow_export.*" \
	"lvmbench.train.loop.x_train_group*" "lvmbench.runs.fused.*"

# One OpenMP thread: mutmut forks its test children from a process that already ran torch, and a forked
# child entering an OpenMP parallel region of the parent's thread pool hangs until mutmut's time limit.
mutate: $(STAMP)
	rm -rf mutants
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(VENV)/bin/mutmut run --max-children 2 $(MUTATE) $(MUTATE_NEW)
	$(VENV)/bin/mutmut results
	HF_HUB_OFFLINE=1 $(PY) scripts/replay_bugs.py

mutate-new: $(STAMP)
	rm -rf mutants
	for target in $(MUTATE_NEW); do \
		OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(VENV)/bin/mutmut run --max-children 1 "$$target" || exit 1; \
	done
	$(VENV)/bin/mutmut results

bench: $(STAMP)
	$(VENV)/bin/lvmbench bench

clean-venv:
	rm -rf $(VENV)
