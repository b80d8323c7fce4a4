# Two entry points, each creating/reusing the virtual environment in $(VENV):
#   make report   regenerate the validation reports (quick mode) into reports/ and docs/results.md
#   make test     run the test suite, benchmarks included (few rounds)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.refsuite-installed
# Benchmarks run, timed, with few rounds (a broken benchmark fails the suite).
BENCH_FLAGS ?= --benchmark-min-rounds=1 --benchmark-max-time=0.2 --benchmark-warmup=off

.PHONY: venv report report-full test bench clean

venv: $(STAMP)

# torch==2.13.0 first: on the build machines that pin is a local CPU wheel, while an
# unpinned torch (also when pulled in by MONAI/PyTomography) downloads GBs of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,gate,cluster]'
	touch $(STAMP)

report: $(STAMP)
	$(VENV)/bin/refsuite report --quick --out reports --results-md docs/results.md

report-full: $(STAMP)
	$(VENV)/bin/refsuite report --full --out reports

test: $(STAMP)
	$(PY) -m pytest $(BENCH_FLAGS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m pytest tests --benchmark-only $(PYTEST_ARGS)

clean:
	rm -rf reports .pytest_cache .benchmarks .hypothesis
