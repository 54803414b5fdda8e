# DeepCIS entry points. Each target installs what is missing first (scripts/install.sh is idempotent).
# DEEPCIS_USE_ACTIVE_ENV=1 uses the active Python environment instead of ./.venv.
ifeq ($(DEEPCIS_USE_ACTIVE_ENV),1)
PY ?= python
else
PY ?= $(CURDIR)/.venv/bin/python
endif

.PHONY: install test test-slow demo clean-demo

install:
	@bash scripts/install.sh

# Default (fast) tests. pytest's exit code 5 ("no tests collected") is reported and fails the run.
test: install
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

# Slow end-to-end tests: training runs, 2-process distributed training, resume through tools/.
test-slow: install
	$(PY) -m pytest -m slow

# The main job: synthetic EVICAN -> converter -> train demo model -> test -> AP tables (work_dirs/demo/).
demo: install
	PY=$(PY) bash scripts/demo.sh

clean-demo:
	rm -rf work_dirs/demo data/synthetic_evican data/synthetic_evican_prepared
