# dnsplan: every target a user or CI needs. Tests run with -race always.
GO ?= go
PROTOC ?= protoc
# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can
# report "context deadline exceeded" as a failure when the time runs out
# while a worker is mid-input on a busy machine (golang/go#75804, fixed in
# Go 1.27). A count has no deadline to race.
FUZZTIME ?= 30000x
PKGS := ./...

COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
IMAGE ?= dnsplan:dev
ETCD_IMAGE ?= dnsplan-etcd:dev
# The compose cluster on the etcd store is a project of its own, so that it
# shares no container or volume with docker-compose.yml's.
ETCD_PROJECT ?= dnsplan-etcd
COMPOSE_ETCD = $(COMPOSE) -p $(ETCD_PROJECT) -f docker-compose.etcd.yml

.PHONY: all build test unit fuzz vet fmt-check proto proto-check tools etcd clean image image-etcd up up-etcd down down-etcd ps logs e2e sim chaos bench bench-quick peerbench

all: build

build:
	CGO_ENABLED=0 $(GO) build -o bin/dnsplan ./cmd/dnsplan

# test is what CI runs: static checks, generated-code drift, the whole suite
# with the race detector, and a short run of every fuzz target.
test: tools vet fmt-check proto-check unit fuzz

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# fuzz runs each fuzz target for FUZZTIME inputs (go test allows one target
# per run).
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

# tools installs what the build and tests need beyond Go itself: protoc,
# and etcd and etcdctl for the tests of the etcd store (etcd below).
tools: etcd
	@command -v $(PROTOC) >/dev/null || scripts/install-tools.sh

# etcd builds etcd and etcdctl, at the version tools/etcd/go.mod pins, into
# .tools/bin (static, from the Go module proxy; a few minutes the first
# time, nothing when they are built already).
etcd:
	@GO="$(GO)" scripts/install-etcd.sh

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

# image builds the static binary, then the FROM scratch image around it.
image: build
	docker build -q -t $(IMAGE) .

# image-etcd builds the FROM scratch etcd image of docker-compose.etcd.yml
# around the static etcd and etcdctl that `make etcd` builds; its context,
# bin/etcd-image, holds only them (hard links) and the image's skeleton.
image-etcd: etcd
	@rm -rf bin/etcd-image && mkdir -p bin/etcd-image && cp -R deploy/image/data bin/etcd-image/data && \
	  for f in etcd etcdctl; do ln -f .tools/bin/$$f bin/etcd-image/$$f 2>/dev/null || cp .tools/bin/$$f bin/etcd-image/$$f; done
	docker build -q -f Dockerfile.etcd -t $(ETCD_IMAGE) bin/etcd-image

# up starts the compose cluster (mutual TLS, with the certificates its
# certs service made), copies the CA and the operator's certificate to
# .dnsplan/certs/ (where ctl looks by default) and waits until every node
# is healthy.
up: image
	$(COMPOSE) up -d
	@mkdir -p .dnsplan/certs && chmod 700 .dnsplan/certs && id=$$($(COMPOSE) ps -a -q certs) && \
	  for f in ca.crt operator.crt operator.key; do docker cp "$$id:/certs/$$f" .dnsplan/certs/$$f; done
	@scripts/wait-healthy.sh bin/dnsplan
	@echo
	@echo "dnsplan is up (mutual TLS; ctl uses .dnsplan/certs/operator.crt):"
	@echo "  gRPC   127.0.0.1:9001 9002 9003   bin/dnsplan ctl status"
	@echo "  DNS    127.0.0.1:5301 5302 5303   dig @127.0.0.1 -p 5301 api.dnsplan.test"
	@echo "  HTTP   127.0.0.1:8001 8002 8003   curl 127.0.0.1:8001/metrics"
	@echo "  backends 127.0.0.1:8081..8084     curl -X POST 127.0.0.1:8081/fail"
	@echo "  make ps | make logs | make down"

# up-etcd starts the compose cluster on the etcd store
# (docker-compose.etcd.yml, project $(ETCD_PROJECT)): three etcd members
# with TLS and authentication, three nodes on them, and the planners,
# enactors, backends and probe of `make up`, on the same host ports (so
# stop one cluster before starting the other). Like up, it copies the CA
# and the operator's certificate to .dnsplan/certs/ and waits until every
# node is healthy.
up-etcd: image image-etcd
	$(COMPOSE_ETCD) up -d
	@mkdir -p .dnsplan/certs && chmod 700 .dnsplan/certs && id=$$($(COMPOSE_ETCD) ps -a -q certs) && \
	  for f in ca.crt operator.crt operator.key; do docker cp "$$id:/certs/$$f" .dnsplan/certs/$$f; done
	@scripts/wait-healthy.sh bin/dnsplan
	@echo
	@echo "dnsplan is up on etcd (project $(ETCD_PROJECT); mutual TLS; ctl uses .dnsplan/certs/operator.crt):"
	@echo "  gRPC   127.0.0.1:9001 9002 9003   bin/dnsplan ctl status"
	@echo "  DNS    127.0.0.1:5301 5302 5303   dig @127.0.0.1 -p 5301 api.dnsplan.test"
	@echo "  HTTP   127.0.0.1:8001 8002 8003   curl 127.0.0.1:8001/metrics"
	@echo "  backends 127.0.0.1:8081..8084     curl -X POST 127.0.0.1:8081/fail"
	@echo "  etcd   etcd1 etcd2 etcd3          $(COMPOSE_ETCD) exec etcd1 /etcdctl member list"
	@echo "  make down-etcd"

# sim runs the state machine simulation for millions of steps (1,000,000
# per seed, 10 seeds per design); make test runs thousands.
sim:
	DNSPLAN_SIM_STEPS=$${DNSPLAN_SIM_STEPS:-1000000} $(GO) test -count=1 -timeout 60m -run 'Simulation' -v ./cluster/fsm

# chaos runs CHAOS_SEEDS seeds (default 50) of each design under the default
# fault mix, CHAOS_DURATION (default 15s) each, and prints the table in the
# README ("Chaos"): about 27 minutes. Legacy runs go on after their first
# violation (--keep-going) so the table counts every invariant they break.
# It fails if the fixed design breaks any invariant in any seed, or if the
# legacy design is caught in fewer than 90% of its seeds.
CHAOS_SEEDS ?= 50
CHAOS_DURATION ?= 15s
chaos: build
	bin/dnsplan chaos --design both --runs $(CHAOS_SEEDS) --duration $(CHAOS_DURATION) --keep-going

# e2e runs both compose clusters end to end, one after the other, with
# the probe checking I1 and I2: docker-compose.yml on Raft (kill, pause,
# disconnect, recreate, restart; about a minute), then
# docker-compose.etcd.yml on the etcd store (an etcd member and a node
# killed, every etcd member stopped and started again). Needs Docker.
# Each project is removed after its test, even if the test binary itself
# died, and the second runs whether the first passed or not.
e2e: image image-etcd
	@status=0; \
	$(GO) test -tags e2e -count=1 -v -timeout 15m -run '^TestComposeCluster$$' ./e2e || status=$$?; \
	$(COMPOSE) -p dnsplan-e2e down -v --remove-orphans >/dev/null 2>&1 || true; \
	$(GO) test -tags e2e -count=1 -v -timeout 15m -run '^TestComposeEtcd$$' ./e2e || status=$$?; \
	$(COMPOSE) -p dnsplan-etcd-e2e -f docker-compose.etcd.yml down -v --remove-orphans >/dev/null 2>&1 || true; \
	exit $$status

# bench measures dnsplan beside its peers (etcd, Knot, NSD, BIND9) in one
# run and rewrites BENCHMARKS.md (about 8 minutes); bench-quick runs fewer
# trials and shorter loads (under 4 minutes) and only prints the figures.
# Both install the peers first (scripts/install-peers.sh, Debian) and start
# and stop every server themselves on loopback ports from 27000
# (BENCHFLAGS='--port-base N' moves them). Neither is part of test.
bench: peerbench
	@scripts/install-peers.sh
	bin/peerbench --out BENCHMARKS.md $(BENCHFLAGS)

bench-quick: peerbench
	@scripts/install-peers.sh
	bin/peerbench --quick $(BENCHFLAGS)

peerbench: build etcd
	$(GO) build -o bin/peerbench ./bench/cmd/peerbench

down:
	$(COMPOSE) down -v --remove-orphans

down-etcd:
	$(COMPOSE_ETCD) down -v --remove-orphans

ps:
	$(COMPOSE) ps

logs:
	$(COMPOSE) logs --tail=200 -f

clean:
	rm -rf bin
