# Outpost: the two commands a new machine needs are `make quickstart` and `make test`.
SHELL := /bin/bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X outpost.dev/outpost/internal/version.Version=$(VERSION) -X outpost.dev/outpost/internal/version.Commit=$(COMMIT)
KUBE_DIR := $(CURDIR)/.cache/kube
export OUTPOST_KUBE_BIN_DIR := $(KUBE_DIR)/bin
export OUTPOST_BIN := $(CURDIR)/bin/outpost

.PHONY: build image kube deps test conformance quickstart bench-cluster bench-relay bench-extension bench-jobs bench-router bench-inference lint clean

## build: the outpost binary, into bin/outpost
build:
	go build -ldflags '$(LDFLAGS)' -o bin/outpost ./cmd/outpost

## image: the outpost container image, without Docker, into bin/outpost-image.tar
## (tagged outpost:$(VERSION), the image `connectedk8s connect` deploys)
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/linux-amd64/outpost ./cmd/outpost
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) \
		go run ./cmd/outpost-image -binary bin/linux-amd64/outpost -version '$(VERSION)' -commit '$(COMMIT)' -o bin/outpost-image.tar

## kube: the upstream control-plane binaries, built once into .cache/kube/bin
kube:
	upstream/build.sh $(KUBE_DIR)

## deps: the Debian packages the project needs (scikit-learn, PyTorch, mpi4py, Open MPI, wrk, nginx, ...)
deps:
	scripts/deps.sh

## test: the whole test suite (unit, integration on a local cluster, end to end)
test: deps build kube
	go vet ./...
	/usr/bin/python3 -B -m unittest discover -s sdk/python -t sdk/python
	go test -count=1 -timeout 30m ./...

## conformance: upstream [Conformance] tests of the node's areas on a fresh local
## cluster (about 25 minutes; not part of `make test`), per-area figures at the end
conformance: deps build kube
	scripts/conformance.sh

## quickstart: bring up the local cluster and run a sample workload end to end
quickstart: deps build kube
	scripts/quickstart.sh

## bench-cluster: start-up time, pod start latency and memory of the local cluster
bench-cluster: build kube
	go run ./bench/cluster

## bench-relay: 1,000 simulated agents against one workspace
bench-relay: build
	go run ./bench/relay

## bench-extension: k8s-extension create -> Installed per scenario on the local cluster
bench-extension: build kube
	go run ./bench/extension

## bench-jobs: 1,000 training jobs through the workspace against 1,000 plain Kubernetes
## Jobs on the same fresh local cluster, then 50 two-instance gangs on room for three
bench-jobs: deps build kube
	go run ./bench/jobs

## bench-router: what the inference router adds to a scoring call: the same wrk load
## straight to a no-op backend, through nginx (keep-alive proxy) and through azureml-fe
bench-router: deps build
	go run ./bench/router

## bench-inference: examples/endpoints end to end on a fresh local cluster: requests/s,
## p50 and p99 of the scikit-learn deployment through the router with wrk, and the
## times of an autoscaled deployment going 1 -> 3 instances under load and back to 1
bench-inference: deps build kube
	go run ./bench/inference

lint:
	gofmt -l $$(git ls-files '*.go') && go vet ./...

clean:
	rm -rf bin
