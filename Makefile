# Targets mirror the README. `make test` is what CI runs (.ci/run).
GO       ?= go
PKGS     := ./...
# Nested modules (benchmarks that compare payonce with other projects) keep
# their dependencies out of the main go.mod; lint still compiles them.
# deploy/k8s is the Kubernetes manifests' test (k8s.io/api stays out of go.mod).
NESTED   := $(patsubst %/go.mod,%,$(wildcard bench/*/go.mod)) deploy/k8s

.PHONY: test lint fmt vet cross actionlint test-only dev fuzz bench demo clean

## test: lint, then every test (unit, store, integration) under the race detector
test: lint test-only

# The tests run NATS as this binary (internal/localnats), built from the
# nats-server version go.mod pins, so that the race detector watches
# payonce's code and not the server's.
NATS_SERVER := $(CURDIR)/bin/nats-server

$(NATS_SERVER): go.mod go.sum
	$(GO) build -o $@ github.com/nats-io/nats-server/v2

test-only: $(NATS_SERVER)
	PAYONCE_NATS_SERVER=$(NATS_SERVER) $(GO) test -race -count=1 -timeout 30m $(PKGS)
	cd deploy/k8s && $(GO) test -count=1 ./...

## lint: go vet (main and nested modules), the cross-platform vet and build, actionlint, and a gofmt check
lint: vet cross actionlint
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags e2e ./tests/e2e
	@for m in $(NESTED); do echo "go vet ($$m)"; (cd $$m && $(GO) vet ./...) || exit 1; done

## cross: vet for macOS (darwin/arm64) and build for Windows (windows/amd64), the
## platforms README.md names; Linux-only process control is behind build tags
cross:
	GOOS=darwin GOARCH=arm64 $(GO) vet $(PKGS)
	GOOS=darwin GOARCH=arm64 $(GO) vet -tags e2e ./tests/e2e
	GOOS=windows GOARCH=amd64 $(GO) build $(PKGS)

## actionlint: check the GitHub workflow (.github/workflows) with actionlint, built from its
## Go module in deploy/tools/actionlint (kept out of go.mod)
actionlint:
	cd deploy/tools/actionlint && $(GO) tool actionlint -no-color $(CURDIR)/.github/workflows/*.yml

## fmt: rewrite every Go file with gofmt
fmt:
	gofmt -w $$(git ls-files '*.go')

## dev: run the whole stack as local processes (no Docker); ports in README.md
dev:
	$(GO) run ./cmd/devstack

## fuzz: run each fuzz target for FUZZTIME (default 30s); their seed corpora also run in `make test`
FUZZTIME ?= 30s
FUZZ_TARGETS := \
	./internal/httpkit:FuzzDecodeJSON ./internal/httpkit:FuzzCheckJSONText \
	./internal/cursor:FuzzDecode ./internal/customer:FuzzCustomerID \
	./pkg/ring:FuzzRing ./pkg/ring:FuzzDecode \
	./pkg/idempotency:FuzzRequest \
	./services/payments/http:FuzzDecodePaymentBody ./services/payments/http:FuzzDecodeRefundBody \
	./services/orders/http:FuzzDecodeOrderBody ./services/orders/http:FuzzCustomerInBody
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg)"; $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; done

## bench: the comparison and load programs (each prints a table; see docs/)
bench:
	cd bench/ring && $(GO) run .
	cd bench/coordinator && $(GO) run . -d 2s
	$(GO) run ./bench/idempotency
	$(GO) run ./bench/payments

## demo: drive the main scenarios against a running stack (make dev in another terminal)
demo:
	$(GO) run ./cmd/payonce-cli demo

clean:
	rm -rf bin .cache

.PHONY: e2e-docker images-docker

## e2e-docker: build the images locally, run the compose stack, the e2e suite against it, tear it down
e2e-docker:
	deploy/e2e.sh

## images-docker: build every image deploy/docker-compose.yml names, with no registry (FORCE=1 rebuilds)
images-docker:
	deploy/local-images.sh $(if $(FORCE),--force)

.PHONY: up down

## up: the whole stack in Docker from the public images, waiting until every container is healthy
## (Compose v2's --wait; with docker-compose 1.29, `up -d` and then `docker-compose ps` to watch)
up:
	@if docker compose version >/dev/null 2>&1; then docker compose up --build --wait; \
	else docker-compose up --build -d && echo "docker-compose 1.29 has no --wait: watch 'docker-compose ps' until all are healthy"; fi

## down: stop the stack and delete its volumes
down:
	@if docker compose version >/dev/null 2>&1; then docker compose down -v; else docker-compose down -v; fi
