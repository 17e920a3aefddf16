# labelscan — the targets a newcomer guesses.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench eval jemalloc browser prometheus containers cjk-font clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install labelscan with its dev tools

run: $(STAMP) jemalloc ## embedded Valkey + gateway + analyzer + notifier, logs prefixed; Ctrl-C stops all
	$(PY) -m shared.run

test: $(STAMP) jemalloc browser prometheus containers cjk-font ## the whole suite against real servers
	$(PY) -m pytest

# Debian's jemalloc, which the embedded Valkey preloads: the wheel's server is built with
# glibc's malloc, and Valkey's own builds use jemalloc (shared/embedded.py says what it
# saves). Without root or apt the server runs on glibc's malloc, as before.
jemalloc:
	@ldconfig -p 2>/dev/null | grep -q libjemalloc.so.2 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2 >/dev/null) \
	  || echo "libjemalloc2 could not be installed: the embedded Valkey uses glibc's malloc"

# Debian's chromium for the browser test (root and apt needed); without it the
# browser test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will be skipped"

# Debian's prometheus (and its promtool) for the metrics test and the alert-rules check;
# without it those tests are skipped and say why.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
	  || echo "prometheus could not be installed: the metrics scrape test will be skipped"

# Debian's podman with runc (crun cannot set up cgroups on every kernel) and mmdebstrap,
# which builds the container test's base image from Debian's packages (no registry pull).
# Root and apt needed; without them the container test is skipped and says why.
containers:
	@{ command -v podman && command -v runc && command -v mmdebstrap; } >/dev/null 2>&1 \
	  || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 \
	  || (apt-get update -qq -o DPkg::Lock::Timeout=600 \
	      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
	        podman runc mmdebstrap uidmap >/dev/null) \
	  || echo "podman could not be installed: the container test will be skipped"

# A Japanese font (Debian's fonts-ipafont-gothic) so the label tests and the evaluation
# can draw Japanese labels; without it those labels are skipped and the test says why.
cjk-font:
	@[ -f /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ] || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-ipafont-gothic >/dev/null) \
	  || echo "fonts-ipafont-gothic could not be installed: Japanese labels will be skipped"

lint: $(STAMP) ## ruff + mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

BENCH_STAMP := $(VENV)/.bench

# Peer queues for the same-run comparison; arq declares redis<6, so it goes in without deps.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(PY) -m pip install --quiet --no-deps 'arq>=0.28'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) jemalloc ## benchmarks against peers measured in the same run; results in bench/results/
	$(PY) -m bench.run

# The label evaluation against the Claude API (costs money: never in CI); skipped without a key.
eval: $(STAMP) cjk-font ## held-out label set through the claude backend, with cost per label
	@if [ -z "$$ANTHROPIC_API_KEY" ]; then echo "ANTHROPIC_API_KEY is not set: skipping the claude evaluation"; \
	  else $(PY) -m bench.eval_claude; fi

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
