# Quick start: `make` (install into .venv and say how to use it), `make demo`, `make test`.
# Every target creates .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all demo test lint quick install path clean

all: install path

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@# MMAction2's own transforms (tests/data/test_mmaction2_oracle.py) and ONNX Runtime (tests/test_export.py):
	@# their tests skip when these optional extras do not install
	$(PY) -m pip install -q -e '.[test,oracle]' || echo "note: the oracle extra did not install; its tests will skip"
	$(PY) -m pip install -q -e '.[test,onnx]' || echo "note: the onnx extra did not install; its test will skip"
	@# the web page of `haltingvt app` (gradio) and selenium for its browser test (tests/test_app.py; that test
	@# also needs the system's Chromium: apt-get install chromium chromium-driver)
	$(PY) -m pip install -q -e '.[test,app,browser]' || echo "note: the app extra did not install; its tests will skip"
	touch $(STAMP)

install: $(STAMP)

path: $(STAMP)
	@echo "haltingvt is installed in $(VENV). To run the haltingvt command from any folder:"
	@echo "  source $(abspath $(VENV))/bin/activate          # this shell only; or add it to PATH for good:"
	@echo "  export PATH=\"$(abspath $(VENV))/bin:\$$PATH\""
	@echo "then: haltingvt --help"

# the demo's own report gives its training time; this line the wall-clock time of the whole command
demo: $(STAMP)
	@start=$$(date +%s); $(VENV)/bin/haltingvt demo --out demo_out || exit $$?; \
	echo "make demo: $$(( $$(date +%s) - start )) s wall-clock (haltingvt demo --out demo_out)"

# ruff (lint + format) and mypy (settings in pyproject.toml) on the whole tree
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# pytest exits 5 when it collects no tests; that is not a failure.
test: lint
	$(PY) -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

# the quick loop: every test but those marked slow
quick: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) demo_out demo_quick
