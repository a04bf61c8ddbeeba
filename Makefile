# `make test` and `make bench` create .venv when it is missing and install into it.
# `make gpu-check` runs from the source tree with the GPU machine's own python3 and installs nothing.
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch to install before the package; on these machines this CPU build lies on disk.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test test-gpu bench lint gpu-check gpu-bar gpu-quality clean

$(STAMP): pyproject.toml constraints/test.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -c constraints/test.txt -e ".[dev,bench,lightning]"
	touch $(STAMP)

install: $(STAMP)

# One worker per core; a file's tests stay on one worker (some share an expensive module-level fixture).
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile

bench: $(STAMP)
	$(PY) -m fusedrnn.bench

lint: $(STAMP)
	$(PY) -m ruff check fusedrnn tests benchmarks

gpu-check:
	PYTHONPATH=. python3 benchmarks/gpu_check.py

# The speed bar's whole grid, the persistent strategy against cuDNN (a device call of its own after gpu-check).
gpu-bar:
	PYTHONPATH=. python3 -m fusedrnn.bench --grid bar

# Short training runs of the Lightning models on a GPU (GPU_QUALITY_MINUTES, FUSEDRNN_DATA; see the script).
gpu-quality:
	python3 benchmarks/gpu_quality.py

clean:
	rm -rf $(VENV) .pytest_cache
