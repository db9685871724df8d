# Two commands do everything on a fresh machine:
#   make demo   - install into .venv (first time only) and run the embedded demo
#   make test   - install into .venv (first time only) and run the test suite
# TORCH_SPEC pins the CPU wheel that lies on this project's machines; on a
# machine with a GPU set it to the build you want (e.g. TORCH_SPEC=torch).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-fast lint install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	# torchattacks and the original AutoAttack (pyautoattack) are only references for cross-check tests;
	# --no-deps keeps torchvision out.
	$(PY) -m pip install --quiet --no-deps "torchattacks==3.5.1" "pyautoattack==0.2.0"
	touch $@

demo: install
	$(VENV)/bin/robprune demo --out runs/demo

# two workers, one file each at a time (module fixtures are built once), one torch thread each (tests/conftest.py)
test: install
	$(PY) -m pytest -n 2 --dist loadfile

# the tests without the slow, multi-process and fuzz ones (a few minutes on 2 cores); CI runs everything
test-fast: install
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow and not distributed and not fuzz"

lint: install
	$(VENV)/bin/ruff check .
