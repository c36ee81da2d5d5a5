# sms-service: `make run` starts the service, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DOCS_STAMP := $(VENV)/.docs-stamp

.PHONY: install system-deps bench-deps run test lint docs bench bench-profile clean

install: $(STAMP)

$(STAMP): setup.cfg providers/twilio/setup.cfg providers/kaleyra/setup.cfg providers/vonage/setup.cfg \
		providers/plivo/setup.cfg providers/telnyx/setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=70" wheel
	$(BIN)/python -m pip install --quiet -e '.[test]' -e providers/twilio -e providers/kaleyra \
		-e providers/vonage -e providers/plivo -e providers/telnyx
	touch $@

# The tests start their own redis-server, and drive the console in Debian's chromium;
# install them when the machine lacks them.
system-deps:
	@command -v redis-server >/dev/null 2>&1 && [ -x /usr/bin/chromium ] || { \
	  echo "installing redis-server and chromium (needed by the tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server chromium >/dev/null; }

run: install
	SERVICE_PROVIDER=$${SERVICE_PROVIDER:-console} $(BIN)/sms-service serve

test: install system-deps
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

# The reference in docs/, built strictly: a broken link or anchor fails.
docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

# wrk drives the benchmark; redis-server backs its scenario 2.
bench-deps:
	@command -v wrk >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing wrk and redis-server (needed by the benchmark)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk redis-server >/dev/null; }

bench: install bench-deps
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py

bench-profile: install bench-deps
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt py-spy
	$(BIN)/python bench/profile_service.py

clean:
	rm -rf $(VENV) site build dist *.egg-info providers/*/*.egg-info providers/*/build .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
