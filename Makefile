# The commands README names. PYTHON must be a Python 3.11 interpreter.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PLATFORM_HOME ?= $(CURDIR)/.platform_home
export DAGSTER_HOME ?= $(PLATFORM_HOME)/dagster
ROLE ?= predict
# A retrain started by the sensors rolls the new model out as a canary: shadow, then 10 % -> 50 % -> promote.
export PLATFORM_ROLLOUT_STRATEGY ?= canary

.PHONY: demo test install system-packages lint check-defs materialize ui ui-secure loop-demo service-status \
        service-stop api-key signing-keys bench-uci bench-serving bench-soak bench-pipeline bench-loop clean image

# What the suite drives for real, as `program:Debian package`. kubectl (the ops tests' kustomize) comes
# with the machine image: Debian's kubernetes-client is 1.20, older than the kustomize v5 k8s/ needs. npm
# installs the Argo Rollouts schemas (k8s-validate; they need node >= 14), from Debian where it is missing.
# dockerd and debootstrap build and run the service's image (`make image`, tests/prod/test_prod_image.py).
# PostgreSQL 15 (bookworm's): the prod_profile tests and `make prod-local` run throwaway clusters of it.
SYSTEM_PACKAGES := prometheus:prometheus promtool:prometheus /usr/bin/chromium:chromium java:openjdk-17-jre-headless \
                   npm:npm /usr/sbin/nginx:nginx-light wrk:wrk /usr/sbin/dockerd:docker.io /usr/sbin/debootstrap:debootstrap \
                   /usr/lib/postgresql/15/bin/initdb:postgresql

$(BIN)/activate: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(BIN)/activate

install: $(BIN)/activate

## make system-packages: apt-get install the SYSTEM_PACKAGES whose program is missing (as root).
system-packages:
	@missing=$$(for pair in $(SYSTEM_PACKAGES); do command -v $${pair%%:*} >/dev/null || echo $${pair#*:}; done \
	  | sort -u | paste -sd ' ' -); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
	  echo "The tests need the Debian package(s): $$missing" >&2; \
	  echo "Install them with: sudo apt-get update && sudo apt-get install -y $$missing" >&2; exit 1; \
	fi; \
	echo "Installing Debian package(s): $$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null

## make demo: install; ingest the latest 7 days (synthetic), train, gate, build and serve the model on
## 127.0.0.1:3001; then the Dagster UI (webserver + daemon) on 127.0.0.1:3000 until Ctrl-C. The model
## service keeps running until `make service-stop`.
demo: install materialize ui

materialize: install
	$(BIN)/python -m platform_assets.demo

# dg warns unless the virtual environment beside pyproject.toml is the active one.
ui check-defs lint: export VIRTUAL_ENV := $(CURDIR)/$(VENV)

# The demo's daemon evaluates these sensors more often than their own minimum intervals (accuracy_drop_sensor
# 300 s, canary_sensor 60 s, promotion_sensor 30 s, model_version_sensor 15 s), so that `make loop-demo` is decided
# in minutes rather than a quarter of an hour: each hand-over waits half an interval on average, and detection ->
# challenger has three (model_version_sensor once, promotion_sensor twice). A tick took under 1 s (median; 4 s at
# most at load 12 on 2 cores). `make demo DEMO_SENSOR_INTERVALS=` keeps every sensor's own (PLATFORM_SENSOR_INTERVALS, README).
DEMO_SENSOR_INTERVALS ?= accuracy_drop_sensor=10,canary_sensor=10,promotion_sensor=10,model_version_sensor=5
ui loop-demo: export PLATFORM_SENSOR_INTERVALS ?= $(DEMO_SENSOR_INTERVALS)

# Ctrl-C reaches dg and make alike; dg stops the webserver, daemon and code server, and make waits for it.
ui: install
	@echo "Dagster UI: http://127.0.0.1:3000  (Ctrl-C stops the UI; 'make service-stop' stops the model service)"
	@echo "It has no login and listens on loopback only; for viewer/operator logins use 'make ui-secure' (SECURITY.md)."
	$(BIN)/dg dev -h 127.0.0.1 -p 3000

## make ui-secure: the Dagster UI behind an authenticating gateway (nginx): viewer = read-only webserver,
## operator = full one, on 127.0.0.1:3000. Add users first:
##   .venv/bin/python -m platform_assets.deploy.ui_gateway add-user NAME --role viewer|operator
ui-secure: install
	$(BIN)/python -m platform_assets.deploy.ui_gateway serve --port 3000

## make test: install if needed (Python and Debian packages), then the whole suite (slow tests included).
test: install system-packages tests/ops/argo_rollouts/node_modules/.package-lock.json
	$(BIN)/python -m pytest

## make k8s-validate: k8s/ checked offline, without a cluster: every kustomization renders and validates
## against the Kubernetes API schemas (kubernetes-validate) and the Argo Rollouts and cert-manager CRD schemas
## (npm, pinned in tests/ops/argo_rollouts), dagster-k8s' run Job too, the overlays configure the environment's table, and the
## migrate Job sets up Dagster's storage on a throwaway local PostgreSQL.
## `make test` runs the same tests (and installs the schemas first: `test` names ARGO_SCHEMAS' path, as
## make expands a rule's prerequisites where it reads them, before this definition).
.PHONY: k8s-validate
ARGO_SCHEMAS := tests/ops/argo_rollouts/node_modules/.package-lock.json
K8S_TESTS := $(wildcard tests/ops/test_ops_k8s_*.py) tests/ops/test_ops_kustomize.py tests/ops/test_ops_dagster_instance.py

$(ARGO_SCHEMAS): tests/ops/argo_rollouts/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: apt-get install -y npm, then make k8s-validate" >&2; exit 1; }
	npm ci --prefix tests/ops/argo_rollouts --no-audit --no-fund

k8s-validate: install $(ARGO_SCHEMAS)
	$(BIN)/python -m pytest -q $(K8S_TESTS)

## make check-defs: the code location loads and its component YAML validates.
check-defs: install
	$(BIN)/dg check defs

## make lint: ruff (lint + format), mypy strict (0 errors), the layer contracts in .importlinter,
## dg check defs (the code location loads) and the secrets scan. .ci/run runs it before the tests.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/dg check defs
	$(MAKE) --no-print-directory secrets-scan

## make secrets-scan: no key material in the tracked files (detect-secrets; .secrets.baseline holds the reviewed
## false positives). Exit 3 only means the baseline's line numbers moved: the scan runs on a copy of it, and
## `make secrets-baseline` refreshes the committed one (keeping the review marks).
.PHONY: secrets-scan secrets-baseline
secrets-scan: install
	@baseline=$$(mktemp); cp .secrets.baseline $$baseline; \
	out=$$($(BIN)/detect-secrets-hook --baseline $$baseline $$(git ls-files | grep -vx '.secrets.baseline')); rc=$$?; \
	rm -f $$baseline; \
	if [ $$rc -ne 0 ] && [ $$rc -ne 3 ]; then echo "$$out"; echo "secrets-scan: key material found" >&2; exit 1; fi; \
	echo "secrets-scan: no key material in $$(git ls-files | wc -l) tracked files"

secrets-baseline: install
	$(BIN)/detect-secrets scan --baseline .secrets.baseline

## make loop-demo: with `make demo` running, send drifted applications with their outcomes and keep sending until
## the rollout they provoke is decided: the retrained version starts as the champion's shadow, the shadow gate
## makes it the challenger, the canary steps it to promotion (or it is retired or rolled back). Prints each step
## as it happens: sensor requests, versions trained, deployments, shadow reports, approvals, promotion and canary
## decisions, registry moves; then the whole timeline and the requests sent and failed. Exit 0 once decided with
## no failed request; after LOOP_DEMO_TIMEOUT seconds (or a failed run) the timeline so far and exit 1.
LOOP_DEMO_TIMEOUT ?= 1800
loop-demo: install
	test -s $(PLATFORM_HOME)/serving/loop-demo.key || $(BIN)/python -m platform_assets.serving.keys create \
	  --role predict --role feedback --file $(PLATFORM_HOME)/serving/api_keys.json --note loop-demo \
	  > $(PLATFORM_HOME)/serving/loop-demo.key
	$(BIN)/python -m platform_assets.loop_demo --api-key-file $(PLATFORM_HOME)/serving/loop-demo.key \
	  --timeout $(LOOP_DEMO_TIMEOUT)

## make service-status: health (serving | unsupervised | down | retired), pids, supervisor restarts; exit 0 when serving.
service-status: install
	$(BIN)/python -m platform_assets.deploy.local status

## make service-stop: stop every process of the local service (supervised or not) and forget the deployment.
service-stop: install
	$(BIN)/python -m platform_assets.deploy.local stop

## make api-key ROLE=feedback: a new key for the local service (printed once, stored hashed).
api-key: install
	$(BIN)/python -m platform_assets.serving.keys create --role $(ROLE) --file $(PLATFORM_HOME)/serving/api_keys.json

## make signing-keys: an Ed25519 key pair for model manifests under $(PLATFORM_HOME)/keys.
signing-keys: install
	$(BIN)/python -m platform_assets.governance.keys create --out-dir $(PLATFORM_HOME)/keys

## make image: the service's container image, credit-risk-service:<code version>: a Debian bookworm base made by
## debootstrap (credit-risk-base:<recipe key>, built once per machine, then a cache hit) and the Bento on it.
## Prints each image's size and build time. Uses the Docker daemon that answers, else starts dockerd (as root)
## with its data under /var/tmp/credit-risk-platform/docker and stops it after the build.
image: install system-packages
	$(BIN)/python -m platform_assets.deploy.image build --bentoml-home $(PLATFORM_HOME)/bentoml

## make prod-local: the production profile on this machine until Ctrl-C (README, "Deploy to a cluster"):
## PostgreSQL, moto S3, an MLflow server, the pipeline once with PLATFORM_ENV=prod, two service replicas
## (3001, 3002) and the Dagster UI (3000) on them; state under $(PLATFORM_HOME)/prod-local. Other ports:
## make prod-local PROD_LOCAL_UI_PORT=3100 PROD_LOCAL_SERVICE_PORTS=3101,3102 (it refuses taken ones).
## make prod-local-stop: stops it from another shell.
.PHONY: prod-local prod-local-stop
prod-local: install system-packages
	$(BIN)/python tests/prod_support.py run --root $(PLATFORM_HOME)/prod-local

prod-local-stop: install
	$(BIN)/python tests/prod_support.py stop --root $(PLATFORM_HOME)/prod-local

bench-uci: install
	$(BIN)/python benchmarks/uci_auc.py

bench-serving: install
	$(BIN)/python benchmarks/serving/run_benchmark.py

## make bench-soak: 64 connections until 1,000,000 requests, worker RSS printed along the way (a few minutes).
bench-soak: install
	$(BIN)/python benchmarks/serving/soak.py

## make bench-pipeline [BENCH_PIPELINE_FLAGS=--huge]: per asset and 10k/100k/1M rows a day (10M with --huge),
## this tree beside a baseline commit: wall time, rows/s, Spark session start, driver and executor peak RSS;
## one task's CPU profile; then the cold UCI graph and seconds per epoch (PLATFORM_UCI_CSV).
BENCH_PIPELINE_FLAGS ?=
bench-pipeline: install
	$(BIN)/python benchmarks/pipeline/run_benchmark.py $(BENCH_PIPELINE_FLAGS)

## make bench-loop [BENCH_LOOP_FLAGS=--smoke]: the closed loop per stage (drift onset -> sensor -> retrain ->
## released -> challenger serving -> decision) in a temporary home with a real service and the sensors evaluated
## every second in process, beside the same steps' pure compute in a plain process; prints the table, the
## targets, failed requests, the machine and its load (about a quarter of an hour on 2 cores).
BENCH_LOOP_FLAGS ?=
bench-loop: install
	$(BIN)/python benchmarks/loop/run_benchmark.py $(BENCH_LOOP_FLAGS)

clean:
	-$(BIN)/python -m platform_assets.deploy.local stop
	rm -rf $(PLATFORM_HOME)
