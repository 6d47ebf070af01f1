# Two targets for a fresh machine: `make demo` (the main job) and `make test` (every test).
# Each builds the virtual environment .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo

.PHONY: venv demo test readme docs clean-demo

$(VENV)/.installed: settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(VENV)/.installed

## The main job on the embedded data (offline): train on synthetic chairs, score, generate
demo: venv
	$(BIN)/kpd train --category chair --preset cpu --out $(DEMO)/chair-cpu
	$(BIN)/kpd eval $(DEMO)/chair-cpu
	$(BIN)/kpd generate $(DEMO)/chair-cpu --n 16

## The README's test command
test: venv
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --do_print --timing && $(BIN)/pytest -q tests/

## Regenerate README.md from nbs/index.ipynb
readme: venv
	$(BIN)/jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README --NbConvertApp.output_files_dir=docs/images >/dev/null 2>&1
	@echo "README.md regenerated from nbs/index.ipynb"

## Docs smoke check without Quarto: process notebooks and render each to HTML
docs: venv
	rm -rf _proc && $(BIN)/python -c "import nbdev.quarto as q; q._ensure_quarto = lambda: None; q.nbdev_proc_nbs.__wrapped__()"
	@for f in $$(find _proc -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*'); do \
	  $(BIN)/jupyter nbconvert --to html --log-level=ERROR "$$f" || exit 1; done

clean-demo:
	rm -rf $(DEMO)
