# dnsplan: every target a user or CI needs. Tests run with -race always.
GO ?= go
PROTOC ?= protoc
FUZZTIME ?= 10s
PKGS := ./...

.PHONY: all build test unit fuzz vet fmt-check proto proto-check tools clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -o bin/dnsplan ./cmd/dnsplan

# test is what CI runs: static checks, generated-code drift, the whole suite
# with the race detector, and a short run of every fuzz target.
test: tools vet fmt-check proto-check unit fuzz

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# fuzz runs each fuzz target for FUZZTIME (go test allows one target per run).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# tools installs what the build and tests need beyond Go itself.
tools:
	@command -v $(PROTOC) >/dev/null || scripts/install-tools.sh

proto:
	$(PROTOC) -I proto \
	  --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
	  --plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
	  --go_out=proto --go_opt=paths=source_relative \
	  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
	  proto/dnsplan/v1/*.proto proto/dnsplan/state/v1/*.proto

# proto-check fails when the committed generated code is stale.
proto-check: proto
	@git diff --exit-code -- proto || { echo "generated code in proto/ is stale: run make proto and commit"; exit 1; }

clean:
	rm -rf bin
