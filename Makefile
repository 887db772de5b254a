# The README's two commands: `make demo` and `make test`. Both work on a fresh machine with Python 3.11+,
# Java 17 and Maven: they create .venv, install the pinned set, and fetch Kafka's jars on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-stamp
TEST_STACK := .cache/test-stack
# promtool checks the alert rules; it comes from Debian's prometheus package, unpacked (no service installed).
PROMTOOL := .cache/prometheus/usr/bin/promtool

.PHONY: demo test lint typecheck clean

$(INSTALLED): pyproject.toml constraints.txt $(wildcard schemas/*.pyx processors/*.pyx)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/kafkatrail demo

$(PROMTOOL):
	mkdir -p .cache/prometheus
	cd .cache/prometheus && (apt-get download prometheus || (apt-get update -qq && apt-get download prometheus))
	dpkg -x .cache/prometheus/prometheus_*.deb .cache/prometheus
	touch $@

test: $(INSTALLED) $(PROMTOOL)
	$(BIN)/kafkatrail stack fetch
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory typecheck
	$(BIN)/python -m pytest -n 2 --dist loadfile; status=$$?; \
	  for stack in $(TEST_STACK)/*/; do [ ! -d "$$stack" ] || $(BIN)/kafkatrail stack down --data-dir "$$stack"; done; \
	  exit $$status

lint: $(INSTALLED)
	$(BIN)/ruff check .

# mypy checks the packages as they install (kafkatrail.schemas is the schemas/ folder, ...): a tree of links
# puts each source folder under the import name pyproject.toml's package-dir gives it.
TYPECHECK := .cache/typecheck/kafkatrail
typecheck: $(INSTALLED)
	rm -rf .cache/typecheck && mkdir -p $(TYPECHECK)
	for path in kafkatrail/*; do ln -s ../../../$$path $(TYPECHECK)/; done
	for folder in schemas producers processors sinks trails deploy; do ln -s ../../../$$folder $(TYPECHECK)/$$folder; done
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .cache
