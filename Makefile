# ferry's workshop. `make help` lists the targets. Logic lives in scripts
# (test/bed/*.sh) and Go commands (test/cmd/*); this file stays thin.

SHELL := bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
GOTESTSUM_VERSION := v1.13.0
GOLANGCI_LINT_VERSION := v2.15.0
GOTESTSUM := $(BIN)/gotestsum
# Packages of the whole suite; the test bed must be up for test/testbed.
PKGS ?= ./...
# The build parameters ferry sends (config.ReservedParams), for emulated jobs.
FERRY_PARAMS := FERRY_GIT_SHA,FERRY_GIT_REF,FERRY_GIT_URL,FERRY_EVENT_ID,FERRY_TRIGGER_ID,FERRY_PIPELINE,TRACEPARENT

.DEFAULT_GOAL := help
.PHONY: help deps build run demo test test-short test-unit chaos lint fmt vet fuzz bench bench-webhook bench-promote bench-outage bench-provision test-chart image emulator clean tools

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/ferry
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ferry ./cmd/ferry

run: build ## Run ferry locally with the in-memory store against the Jenkins emulator (examples/local.yaml)
	$(GO) build -o $(BIN)/jenkins-emulator ./test/cmd/jenkins-emulator
	@trap 'kill %1 2>/dev/null' EXIT; \
	$(BIN)/jenkins-emulator -listen 127.0.0.1:8081 -builtin-executors 2 -jobs 'acme/app=:$(FERRY_PARAMS)' -duration 20s & \
	sleep 1; $(BIN)/ferry serve --config examples/local.yaml --log-format text

# The demo reuses a test bed that is up (and leaves it up); it starts one that
# is not, and then stops it. It takes down everything else it started, also
# on Ctrl-C.
demo: deps testbed-tools build ## Follow one push live from webhook to production on the test bed: a line per stage, a timeline; leaves nothing running
	$(GO) build -o $(BIN)/demo ./test/cmd/demo
	$(BIN)/demo -ferry $(BIN)/ferry

$(GOTESTSUM):
	GOBIN=$(BIN) $(GO) install gotest.tools/gotestsum@$(GOTESTSUM_VERSION)

tools: $(GOTESTSUM) ## Install the test runner (gotestsum) into bin/

deps: ## Install what the tests need (apt packages, the test bed's binaries); idempotent, quick when done
	bash test/bed/ci-setup.sh

# A failed test is run once more (at most 3 of them) and both results are
# printed, so a flake shows in the log without failing the run; a test that
# fails twice fails the run.
test: deps $(GOTESTSUM) testbed-up ## Run the whole suite (unit, integration, end to end) against real servers; starts the test bed
	$(GOTESTSUM) --format pkgname-and-test-fails --format-hide-empty-pkg \
		--rerun-fails=1 --rerun-fails-max-failures=3 --packages="$(PKGS)" -- -race -count=1 -timeout 30m

test-short: $(GOTESTSUM) ## Run the fast tier only (-short): skips what needs servers, saying which
	$(GOTESTSUM) --format pkgname-and-test-fails --format-hide-empty-pkg -- -race -short $(PKGS)

# The fault suite (test/chaos) also runs in `make test`, bounded (two short
# crash rounds; the provisioner faults on bursts of 60 builds; the
# promoter's leader killed twice; Jenkins restarted under 30 running
# builds) with -race; the API-server restart runs here only.
# Here ferry runs as built for production (no -race), at its own speed; the
# provisioner faults need the test bed's API server.
chaos: deps testbed-up ## The fault suite in full: ferry SIGKILLed mid-trigger (50 ms, 300 ms, 5 s answers; fresh and 3,000-build jobs), the provisioner's leader killed and frozen and Redis restarted under 200-build bursts, the promoter's leader killed mid-rollout and at its approval gate, Jenkins and the API server restarted, 10 times (CHAOS_COUNT); a table at the end
	@mkdir -p $(BIN); rm -f $(BIN)/chaos-report.txt
	FERRY_CHAOS=full FERRY_CHAOS_REPORT=$(BIN)/chaos-report.txt $(GO) test -count=$${CHAOS_COUNT:-10} -timeout 240m ./test/chaos; \
		status=$$?; echo "fault suite, one line per run:"; cat $(BIN)/chaos-report.txt 2>/dev/null; \
		echo; $(GO) run ./test/cmd/chaos-table $(BIN)/chaos-report.txt; exit $$status

lint: ## Run golangci-lint (v2) with the repo's .golangci.yml
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

fmt: ## Format the code
	gofmt -w $$(git ls-files '*.go')

vet: ## go vet every package
	$(GO) vet ./...

fuzz: ## Fuzz the webhook verify/parse/normalize path for 60s (FUZZTIME=…)
	$(GO) test -run '^$$' -fuzz FuzzDelivery -fuzztime $${FUZZTIME:-60s} ./pkg/webhook

bench: ## Go micro-benchmarks (stores, receiver pieces)
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

bench-webhook: ## Receiver benchmark: ferry+Redis vs a bare HMAC handler, side by side
	$(GO) run ./test/cmd/webhook-bench

bench-promote: ## Promotion benchmark: ferry's copy by digest vs pull-then-push of a 5-layer 50 MiB image (needs the test bed)
	$(GO) run ./test/cmd/promote-bench

image: ## Build ferry's image (linux/amd64+arm64) without Docker into bin/ferry-image.tar; IMAGE=REGISTRY/REPO:TAG pushes it instead
	$(GO) run ./cmd/ferry-image --strip --version $(VERSION) $(if $(IMAGE),--push $(IMAGE),--tarball $(BIN)/ferry-image.tar)

test-chart: ## Lint, render and install-test the Helm chart (charts/ferry; the install needs the test bed)
	$(GO) test -count=1 ./test/chart

bench-outage: ## Jenkins calls and log lines per second while the commit status API is unreachable (500 finished builds)
	$(GO) run ./test/cmd/status-outage -pushes 500 -window 30s

bench-provision: ## Provisioner benchmark: a burst of queued builds vs a bare client-go loop, then cold vs warm pool (needs the test bed)
	$(GO) run ./test/cmd/provision-bench

emulator: ## Run the Jenkins emulator standalone on 127.0.0.1:8081
	$(GO) run ./test/cmd/jenkins-emulator -listen 127.0.0.1:8081 -builtin-executors 2 -jobs 'acme/app=:$(FERRY_PARAMS)'

clean: ## Remove build output
	rm -rf $(BIN) coverage*

include test/bed/bed.mk
