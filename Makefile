# auditexport — see README.md. Tools are pinned in tools/go.mod and
# tools/buf/go.mod and run with `go tool`, so nothing is installed globally.
SHELL := /bin/bash
GO    ?= go
BUF   := $(GO) tool -modfile=tools/buf/go.mod buf
BIN   := $(CURDIR)/bin
BUF_AGAINST ?= HEAD~1
# Builds and tests without the checkout's path in them: the Go build cache is
# then shared by every clone on the machine (a fresh clone recompiles nothing
# a previous run compiled), and no local path ends up in a binary.
#
# Under -race every package is instrumented. Leaving the pure-computation
# libraries out (SQLite's transpiled engine and its C library, the
# compressors, the Parquet writer: -gcflags=<pkg>=-race=false) made -race
# exports ~4x faster, but the detector then reported races inside reflect's,
# encoding/json's and encoding/xml's lazily built caches on their first
# concurrent use (a -race server died in 3 of 6 runs of the GCS/S3 tests
# under load, 0 of 5 with everything instrumented; docs/CI.md). The
# integration tests that export hundreds of thousands of rows run a server
# built without -race instead (volumeTest in integration_test/harness_test.go).
export GOFLAGS := $(strip $(filter-out -trimpath,$(GOFLAGS)) -trimpath)

.PHONY: console run build dist tools generate lint check-generated test test-go test-compile test-fuzz services bench bench-scheduler bench-api bench-load soak

run: ## Run the server on embedded SQLite in ./data
	$(GO) run ./cmd/auditexport serve

build: ## The server and the CLI into ./bin
	$(GO) build -o $(BIN)/auditexport ./cmd/auditexport
	$(GO) build -o $(BIN)/auditctl ./cmd/auditctl

# Release binaries: static (CGO off: the SQLite driver is pure Go), stripped,
# reproducible paths, the version stamped in (`auditexport version`).
VERSION        ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DIST_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
DIST_CMDS      ?= auditexport auditctl
DIST_LDFLAGS   := -s -w -X github.com/auditexport/auditexport/internal/version.Version=$(VERSION)
dist: ## Static binaries for linux and darwin (amd64, arm64) and SHA256SUMS into ./dist
	rm -rf dist && mkdir -p dist
	set -e; for p in $(DIST_PLATFORMS); do for c in $(DIST_CMDS); do \
		echo "dist/$$c-$${p%/*}-$${p#*/}"; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags '$(DIST_LDFLAGS)' \
			-o "dist/$$c-$${p%/*}-$${p#*/}" ./cmd/$$c; \
	done; done
	cd dist && sum="sha256sum"; command -v sha256sum >/dev/null || sum="shasum -a 256"; \
		$$sum -- * > SHA256SUMS   # the glob is expanded before SHA256SUMS exists

console: ## Rebuild the web console (web/console) into internal/console/dist (commit it)
	./scripts/install-test-tools.sh >/dev/null
	cd web/console && node node_modules/typescript/bin/tsc -p tsconfig.json && node build.mjs

tools: ## Build pinned dev tools into ./bin (grpcurl for the README walk-through)
	$(GO) build -modfile=tools/go.mod -o $(BIN)/grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl

generate: ## Regenerate gen/ (buf, then the served OpenAPI 3.1 document) and ent/ (entc)
	$(BUF) generate
	$(GO) run ./internal/apidoc/openapi3gen gen/openapi/auditexport.swagger.json gen/openapi/auditexport.openapi.json
	cd ent && $(GO) run -mod=mod entc.go

lint:
	$(GO) mod verify
	$(BUF) lint
	$(BUF) format -d --exit-code
	@# Wire compatibility with the previous commit (BUF_AGAINST overrides, e.g. a release tag).
	@if git rev-parse -q --verify "$(BUF_AGAINST)^{commit}" >/dev/null; then \
		$(BUF) breaking --against '.git#ref=$(BUF_AGAINST)'; \
	else echo "buf breaking: no $(BUF_AGAINST) in this clone; skipped"; fi
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v -e '^gen/' -e '^ent/[^s]')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

check-generated: generate ## Fail if regenerating changes committed code
	@if [ -n "$$(git status --porcelain -- gen ent)" ]; then \
		echo "generated code is stale; run 'make generate' and commit:"; git status --porcelain -- gen ent; git diff --stat -- gen ent; exit 1; fi

services: ## Install pinned test servers (MinIO, fake-gcs-server, Azurite, mailpit, DuckDB) and check PostgreSQL
	./scripts/install-test-tools.sh
	./scripts/test-services.sh

# Integration tests run in parallel (integration_test/harness_test.go says
# what a test must own); they mostly wait on servers, scaled clocks and I/O,
# so more run at once than there are cores (the CPU-heavy ones share cpuSlots).
TEST_PARALLEL ?= 12
# integration_test is named first: go test starts packages in the order given,
# and that package is the longest (the critical path); the others run beside it.
GO_TEST = $(GO) test -race -count=1 -timeout 45m -parallel $(TEST_PARALLEL) ./integration_test/ ./...
# Sub-makes run independent steps at once; -O keeps each step's output together.
SUBMAKE_FLAGS = --no-print-directory --output-sync=target

test-go: ## go test -race ./..., after installing the test tools (the packages compile meanwhile)
	@$(MAKE) $(SUBMAKE_FLAGS) -j3 services tools test-compile
	$(GO_TEST)

# Compiles every package and test variant test-go needs, with and without
# -race (-export runs the compiler, nothing links), and the fuzz-instrumented
# build of test-fuzz (minutes when the cache is cold, e.g. a new checkout
# path), into the build cache: this overlaps the tool install and lint; with a
# warm cache it takes seconds.
test-compile:
	$(GO) list -race -test -deps -export ./... >/dev/null
	$(GO) list -deps -export ./cmd/... >/dev/null
	$(GO) test -c -o /dev/null -fuzz '^FuzzRPCs$$' ./server/

# Fuzz every RPC through the in-process server for a bounded time (the seed
# corpus in server/testdata/fuzz/FuzzRPCs also runs in test-go).
FUZZTIME ?= 30s
test-fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRPCs$$' -fuzztime $(FUZZTIME) ./server/

# The test tools install from the start; the test packages compile once the
# generated code has been checked (check-generated rewrites gen/ and ent/).
test: ## The whole CI suite: check-generated, lint, test-go, test-fuzz
	@$(MAKE) $(SUBMAKE_FLAGS) -j4 services tools test-static
	$(GO_TEST)
	@$(MAKE) $(SUBMAKE_FLAGS) test-fuzz

# Runs lint and test-compile at once when called from test (-j4 jobserver).
.PHONY: test-static
test-static:
	@$(MAKE) $(SUBMAKE_FLAGS) check-generated
	@$(MAKE) $(SUBMAKE_FLAGS) lint test-compile

# Long benchmark (not part of `make test`; its 20k-row smoke is): export 1M and
# 4M rows in every case against its anchor, measured in the same run, and write
# docs/BENCHMARKS.md (BENCH_ROWS=1000000,10000000 for the 10M-row RSS check). BENCH_PG_ROWS=1000000 skips 4M on PostgreSQL.
BENCH_ROWS    ?= 1000000,4000000
BENCH_PG_ROWS ?= $(BENCH_ROWS)
BENCH_REPEAT  ?= 2
# Cases (bench/export_test.go allCases): CSV+gzip to MinIO and LOCAL against
# the `client | gzip | upload` pipeline, CSV/JSONL+zstd and Parquet against
# the client's raw CSV read. Empty: all.
BENCH_CASES   ?=
# Send now's first progress message and cadence under load (bench/progress_test.go).
BENCH_PROGRESS_SAMPLES ?= 200
BENCH_PROGRESS_ROWS    ?= 100000
bench: ## Export throughput and peak RSS vs the shell-pipeline anchor; writes docs/BENCHMARKS.md
	AUDITEXPORT_BENCH_ROWS=$(BENCH_ROWS) AUDITEXPORT_BENCH_PG_ROWS=$(BENCH_PG_ROWS) AUDITEXPORT_BENCH_REPEAT=$(BENCH_REPEAT) \
		AUDITEXPORT_BENCH_CASES=$(BENCH_CASES) \
		AUDITEXPORT_BENCH_PROGRESS_SAMPLES=$(BENCH_PROGRESS_SAMPLES) AUDITEXPORT_BENCH_PROGRESS_ROWS=$(BENCH_PROGRESS_ROWS) \
		AUDITEXPORT_BENCH_REPORT=$(CURDIR)/docs/BENCHMARKS.md \
		$(GO) test -count=1 -timeout 3h -run '^(TestExportThroughput|TestSendNowProgress)$$' -v ./bench/

# API reads (GetSchedule, ListSchedules page 50; gRPC and REST; c=16 and 64)
# against the same process's gRPC health check; writes its section of
# docs/BENCHMARKS.md. Its 300 ms-per-measurement smoke runs in `make test`.
BENCH_API_DURATION ?= 10s
bench-api: ## API read throughput and p99 vs the gRPC health check; writes docs/BENCHMARKS.md
	AUDITEXPORT_BENCH_API_DURATION=$(BENCH_API_DURATION) AUDITEXPORT_BENCH_REPORT=$(CURDIR)/docs/BENCHMARKS.md \
		$(GO) test -count=1 -timeout 1h -run '^TestAPIReads$$' -v ./bench/

# Scheduler lateness for 1,000 and 10,000 schedules due at once, SQLite and
# PostgreSQL; writes its section of docs/BENCHMARKS.md.
BENCH_SCHEDULES ?= 1000,10000,100000
bench-scheduler: ## p50/p99 lateness of scheduled runs; writes docs/BENCHMARKS.md
	AUDITEXPORT_BENCH_SCHEDULES=$(BENCH_SCHEDULES) AUDITEXPORT_BENCH_REPORT=$(CURDIR)/docs/BENCHMARKS.md \
		$(GO) test -count=1 -timeout 1h -run '^TestSchedulerLateness$$' -v ./bench/

# Load (bench/load_test.go): BENCH_LOAD_CLIENTS clients for BENCH_LOAD_DURATION
# mixing reads, writes, Send nows and watchers, SQLite and PostgreSQL with two
# replicas; asserts no failed call, no lost acknowledged write and one terminal
# message per Send now, and writes throughput and p50/p99 per call to
# docs/BENCHMARKS.md. Its 40-client, 8 s smoke runs in `make test`.
BENCH_LOAD_CLIENTS  ?= 200
BENCH_LOAD_DURATION ?= 60s
bench-load: ## Load test (200 clients, 60 s, both backends); writes docs/BENCHMARKS.md
	AUDITEXPORT_BENCH_LOAD_CLIENTS=$(BENCH_LOAD_CLIENTS) AUDITEXPORT_BENCH_LOAD_DURATION=$(BENCH_LOAD_DURATION) \
		AUDITEXPORT_BENCH_REPORT=$(CURDIR)/docs/BENCHMARKS.md \
		$(GO) test -count=1 -timeout 1h -run '^TestLoad$$' -v ./bench/

# The same load for longer (same assertions; the report is not written unless
# SOAK_REPORT=docs/BENCHMARKS.md, then into its own "soak" section).
SOAK_CLIENTS  ?= $(BENCH_LOAD_CLIENTS)
SOAK_DURATION ?= 10m
SOAK_REPORT   ?=
soak: ## The load test for SOAK_DURATION (default 10m) per backend
	AUDITEXPORT_BENCH_LOAD_CLIENTS=$(SOAK_CLIENTS) AUDITEXPORT_BENCH_LOAD_DURATION=$(SOAK_DURATION) \
		AUDITEXPORT_BENCH_LOAD_SECTION=soak AUDITEXPORT_BENCH_REPORT=$(if $(SOAK_REPORT),$(abspath $(SOAK_REPORT))) \
		$(GO) test -count=1 -timeout 3h -run '^TestLoad$$' -v ./bench/
