# Developer entry points. On a fresh Debian/Ubuntu machine (as root or a user with sudo):
#   make run    runs the whole stack locally from Procfile.dev (Ctrl-C stops it)
#   make test   runs the full test suite, SQLite then PostgreSQL, as CI does
# Missing system packages (python3-venv, redis-server, postgresql) are installed with apt-get.
# The local LLM (llama-cpp-python + the SmolLM2 model) is built and fetched once per machine
# into $MENTOR_CACHE_DIR (default ~/.cache/mentor-backend) by scripts/ensure-llm: the first
# run on a machine takes a few minutes more.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Recipes (and so the processes of Procfile.dev) find the virtualenv's python, celery, gunicorn first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# Extra pytest arguments for test and test-fast, e.g.  make test PYTEST_ARGS='-k login'
PYTEST_ARGS ?=

# Ports used by Procfile.dev. The environment (or `make run PORT=8000`) and .env win.
DEFAULT_PORT := 5000
DEFAULT_FLOWER_PORT := 5555
DEFAULT_REDIS_PORT := 6379

# Shell expression for the Redis server to use instead of starting one: REDIS_URL from
# the environment, else an uncommented REDIS_URL=... in .env; empty means "start one".
EXTERNAL_REDIS_URL = $${REDIS_URL:-$$(sed -n 's/^[[:space:]]*REDIS_URL=[[:space:]]*//p' .env 2>/dev/null | tail -n 1 || true)}
# The same for the SMTP server: MAIL_SERVER set means "no dev mail sink" (the app then sends there).
EXTERNAL_MAIL_SERVER = $${MAIL_SERVER:-$$(sed -n 's/^[[:space:]]*MAIL_SERVER=[[:space:]]*//p' .env 2>/dev/null | tail -n 1 || true)}

.PHONY: help venv llm tts env redis migrate run lint test test-fast bench clean

help:
	@echo "make run        run the app locally: the processes of Procfile.dev"
	@echo "make test       full test suite: SQLite, then PostgreSQL (args: PYTEST_ARGS=...)"
	@echo "make test-fast  quick check: lint, SQLite, tests not marked slow, stop at the first failure"
	@echo "make lint       ruff (rules in pyproject.toml); make test and test-fast run it first"
	@echo "make migrate    apply the database migrations"
	@echo "make llm        install the local LLM: llama-cpp-python (built once per machine) + model"
	@echo "make tts        install speech: Piper in its own venv + voice, espeak-ng, sox"
	@echo "make bench      benchmarks against their baselines: bench/results/latest.md (not part of test)"
	@echo "make clean      remove var/ and caches (keeps .env and .venv)"

# --- virtualenv: reinstalled only when a requirements file is newer than the stamp ---

venv: $(VENV)/.installed

$(VENV)/.installed: $(wildcard requirements.txt requirements-dev.txt) | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

$(PY):
	@if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then \
	    . scripts/lib.sh && apt_install python3 python3-venv; \
	fi
	python3 -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

# --- local LLM: scripts/ensure-llm keeps its own stamp (.venv/.llm-installed, over
# requirements.txt, requirements-llm.txt and the wheel) and a per-machine cache of the
# llama-cpp-python wheel and the model; it takes well under a second when all is there ---

llm: venv
	@scripts/ensure-llm

# --- speech: Piper (GPL-3.0) in a virtualenv of its own, its voice, espeak-ng and sox ---

tts:
	@scripts/ensure-tts

# --- .env: created once from .env.example with fresh secrets, never overwritten ---

env:
	@if [ -f .env ]; then \
	    if ! grep -qE '^[[:space:]]*FLOWER_BASIC_AUTH=[^[:space:]]+' .env; then \
	        echo "FLOWER_BASIC_AUTH=admin:$$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')" >> .env; \
	        echo ".env exists; added the Flower login it lacked (Flower needs one to start): FLOWER_BASIC_AUTH"; \
	    else \
	        echo ".env exists (left as is); the Flower login is FLOWER_BASIC_AUTH in .env"; \
	    fi; \
	else \
	    test -f .env.example || { echo "error: .env.example is missing" >&2; exit 1; }; \
	    token() { python3 -c "import secrets; print(secrets.token_urlsafe($$1))"; }; \
	    umask 077; \
	    awk -v secret="$$(token 48)" -v jwt="$$(token 48)" -v flower="admin:$$(token 12)" ' \
	        BEGIN { v["SECRET_KEY"] = secret; v["JWT_SECRET_KEY"] = jwt; v["FLOWER_BASIC_AUTH"] = flower } \
	        { key = $$0; sub(/=.*/, "", key) } \
	        key in v { if ($$0 ~ /^[A-Z_]+=[[:space:]]*$$/) print key "=" v[key]; else print; delete v[key]; next } \
	        { print } \
	        END { for (key in v) print key "=" v[key] }' .env.example > .env.tmp; \
	    mv .env.tmp .env; \
	    echo "Created .env from .env.example with a fresh SECRET_KEY and JWT_SECRET_KEY."; \
	    echo "Flower login (user admin, random password): FLOWER_BASIC_AUTH in $(CURDIR)/.env"; \
	fi

# --- services ---

redis:
	@if [ -n "$(EXTERNAL_REDIS_URL)" ]; then \
	    echo "REDIS_URL is set: using that Redis server, not a local one"; \
	else \
	    scripts/ensure-redis; \
	fi

migrate: venv env
	@mkdir -p var
	$(VENV)/bin/flask --app api db upgrade

# Runs honcho with the process names of Procfile.dev -- web first, since honcho hands
# $PORT to the first process (+100 for each next one) -- minus redis when REDIS_URL
# is set, and minus the mail sink when MAIL_SERVER is set. .env is loaded without
# overriding the environment (as the app's settings do), then the port defaults apply
# and REDIS_URL defaults to the local redis.
run: venv llm tts env redis migrate
	@mkdir -p var/redis var/mail
	@external_redis="$(EXTERNAL_REDIS_URL)"; external_mail="$(EXTERNAL_MAIL_SERVER)"; \
	if [ -n "$$external_mail" ]; then echo "MAIL_SERVER is set: mail goes to $$external_mail, no dev mail sink"; fi; \
	procs=$$(awk -F: -v skip=" $${external_redis:+redis} $${external_mail:+mailsink} " \
	    '/^[A-Za-z0-9_-]+:/ && index(skip, " " $$1 " ") == 0 { if ($$1 == "web") print $$1; else rest = rest $$1 "\n" } \
	     END { printf "%s", rest }' Procfile.dev); \
	exec $(VENV)/bin/dotenv -f .env run --no-override bash -c ' \
	    export PORT="$${PORT:-$(DEFAULT_PORT)}" FLOWER_PORT="$${FLOWER_PORT:-$(DEFAULT_FLOWER_PORT)}"; \
	    export REDIS_PORT="$${REDIS_PORT:-$(DEFAULT_REDIS_PORT)}"; \
	    export REDIS_URL="$${REDIS_URL:-redis://127.0.0.1:$$REDIS_PORT/0}"; \
	    echo "Starting:" $$*; \
	    echo "API: http://127.0.0.1:$$PORT   Flower: http://127.0.0.1:$$FLOWER_PORT (login: FLOWER_BASIC_AUTH in .env)"; \
	    exec $(VENV)/bin/honcho -e /dev/null -f Procfile.dev start "$$@"' run-env $$procs

# --- tests ---

lint: venv
	$(VENV)/bin/ruff check .

# The tests start their own redis-server, so the binary is needed even with REDIS_URL.
test: venv llm tts lint
	scripts/ensure-redis
	@command -v wrk >/dev/null || { . scripts/lib.sh && apt_install wrk; }  # the bench smoke test
	scripts/run-tests $(PYTEST_ARGS)

test-fast: venv llm tts lint
	scripts/ensure-redis
	env -u DATABASE_URL $(VENV)/bin/pytest -q -m "not slow" -x $(PYTEST_ARGS)

# Starts its own Redis, database and servers on free loopback ports; wrk is the load generator.
bench: venv llm tts
	scripts/ensure-redis
	@command -v wrk >/dev/null || { . scripts/lib.sh && apt_install wrk; }
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
	find . \( -path ./.venv -o -path ./.git \) -prune -o \
	    \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +
