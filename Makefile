# Two commands on a fresh machine: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export DJANGO_SETTINGS_MODULE := config.settings

.PHONY: demo test lint services services-stop db venv lock bench clean system-packages

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

services: venv
	$(PY) scripts/services.py postgres rabbitmq

services-stop:
	-$(PY) scripts/services.py stop

db: services
	$(PY) manage.py db_setup

# Debian packages the tests drive as real processes: nginx (the exported proxy configuration),
# Prometheus with promtool (scrapes every process; alert rule tests), Chromium (the ops page in a
# headless browser). Installed when missing and we may (root with apt-get), else the test says why.
SYSTEM_PACKAGES := nginx:/usr/sbin/nginx prometheus:/usr/bin/prometheus chromium:/usr/bin/chromium
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do [ -x "$${p#*:}" ] || missing="$$missing $${p%%:*}"; done; \
	  [ -z "$$missing" ] || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
	  || (echo "installing Debian packages:$$missing"; apt-get update -q >/dev/null \
	      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null)

test: db system-packages
	$(PY) -m pytest $(PYTEST_ARGS)

# Without RabbitMQ, `broker` starts Tansu (Kafka) and the demo runs the events flow over it.
demo: venv
	$(PY) scripts/services.py postgres broker
	$(PY) manage.py db_setup
	$(PY) manage.py demo

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy strangler cdc migrations ops harness
	$(VENV)/bin/lint-imports

# Each benchmark creates databases of its own (<DB_NAME_PREFIX>bench_<name>_*) and drops them at
# the end, so they run in any order; bench/consumer_probe.py is a consumer module, not a benchmark.
bench: services
	@set -e; for b in bench/*.py; do \
	  case $$b in bench/__init__.py|bench/consumer_probe.py) ;; *) $(PY) $$b;; esac; done

lock: venv
	$(PY) -m pip install --quiet -r requirements.in
	$(PY) -m pip freeze --exclude-editable > requirements.txt

clean:
	rm -rf $(VENV) .local
