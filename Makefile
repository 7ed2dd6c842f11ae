# tapnf — `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv tools demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' -e tests/example_plugin
	@touch $@

tools:
	@bash scripts/ensure-tools.sh

demo: venv tools
	$(VENV)/bin/nf demo

test: venv tools
	$(PY) -m pytest -q -p no:cacheprovider

lint: venv
	$(VENV)/bin/ruff check nf pipeline plugins tests
	$(VENV)/bin/ruff format --check nf pipeline plugins tests
	$(VENV)/bin/mypy nf pipeline plugins

# nginx (Debian package, with the stream module) is the reference server; installed when root.
BENCH_ARGS ?=
bench: venv tools
	@if [ "$$(id -u)" = 0 ] && ! { command -v nginx >/dev/null && test -e /usr/lib/nginx/modules/ngx_stream_module.so; }; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx libnginx-mod-stream; \
	fi
	$(VENV)/bin/nf bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
