# Petrel. `make run` starts a single-node cluster; `make test` runs every test.
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
DATA_DIR ?= /var/lib/petrel
BIN := $(CURDIR)/bin
OPENAPI_PKGS := $(shell cat hack/openapi-packages.txt)
# Managed fields kept as interned strings (apimachinery's fieldsv1string): the
# same field sets of many objects (a ReplicaSet's pods) are held once.
TAGS := -tags=fieldsv1string

.PHONY: all deps build images run test unit e2e lint generate generate-openapi generate-bpf verify-generated bench fuzz clean

all: build

# Each long step says what it does and how long it takes the first time
# (later runs reuse the apt, module and build caches), so `make run` on a new
# machine does not look stuck.
deps:
	@echo "==> deps: Debian packages and Go modules (first run: a few minutes of downloads; then seconds)"
	@hack/deps.sh

build:
	@echo "==> build: petrel, petrelctl, petrel-cni, petrel-logger, petrel-kubectl into bin/ (first build: about 5 minutes on 2 cores; then seconds)"
	$(GO) build $(TAGS) -o $(BIN)/petrel ./cmd/petrel
	$(GO) build $(TAGS) -o $(BIN)/petrelctl ./cmd/petrelctl
	$(GO) build $(TAGS) -o $(BIN)/petrel-cni ./cmd/petrel-cni
	$(GO) build $(TAGS) -o $(BIN)/petrel-logger ./cmd/petrel-logger
	$(GO) build $(TAGS) -o $(BIN)/petrel-kubectl ./cmd/petrel-kubectl

# The test images, as OCI archives built from busybox-static and the Go test
# server (no registry, no container engine).
images:
	@echo "==> images: the test images from busybox-static and the Go test server (first run: about a minute; then seconds)"
	$(GO) run ./test/images/build -out test/images/out

# The node imports <data-dir>/images/*.tar at start, so the test image is
# ready for pods.
run: deps build images
	mkdir -p $(DATA_DIR)/images && cp test/images/out/*.tar $(DATA_DIR)/images/
	@echo "==> petrel up --data-dir $(DATA_DIR): the cluster starts in seconds and prints what to type next (Ctrl-C stops it)"
	$(BIN)/petrel up --data-dir $(DATA_DIR)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@hack/verify-no-binaries.sh
	$(GO) vet $(TAGS) ./...

test: deps build lint verify-generated
	PETREL_BIN=$(BIN)/petrel $(GO) test $(TAGS) -count=1 -timeout 45m ./...

unit:
	$(GO) test $(TAGS) -count=1 ./controlplane/...

e2e: build
	PETREL_BIN=$(BIN)/petrel $(GO) test $(TAGS) -count=1 -timeout 45m ./test/...

generate: generate-openapi generate-bpf

generate-bpf:
	$(GO) generate ./dataplane/bpfobj/

generate-openapi:
	$(GO) tool openapi-gen --output-dir controlplane/openapi/generated \
	  --output-pkg github.com/petrel-project/petrel/controlplane/openapi/generated \
	  --output-file zz_generated.openapi.go --go-header-file hack/boilerplate.go.txt \
	  --report-filename /dev/null $(foreach p,$(OPENAPI_PKGS),--readonly-pkg $(p)) $(OPENAPI_PKGS)

verify-generated:
	@hack/verify-generated.sh

bench: build
	$(BIN)/petrelctl bench api --petrel $(BIN)/petrel
	$(BIN)/petrelctl bench ha --petrel $(BIN)/petrel
	$(BIN)/petrelctl bench dns --petrel $(BIN)/petrel
	$(BIN)/petrelctl bench dataplane
	$(BIN)/petrelctl bench ingress --petrel $(BIN)/petrel
	$(BIN)/petrelctl bench network --petrel $(BIN)/petrel
	$(BIN)/petrelctl bench policy
	$(BIN)/petrelctl bench proxy --petrel $(BIN)/petrel
	$(BIN)/petrelctl bench scheduler --petrel $(BIN)/petrel
	$(BIN)/petrelctl bench pods --petrel $(BIN)/petrel

# Go native fuzz targets: the request body decoders, the patch paths and
# request paths (apiserver), selectors (registry), the DNS packet paths and
# the CNI configuration. `make test` runs each on its committed corpus (the
# seeds in the test and testdata/fuzz); `make fuzz` searches for new inputs,
# FUZZTIME per target (an instrumented build of a package takes minutes
# the first time). A failing input is written to testdata/fuzz: commit it
# with the fix.
FUZZ_TARGETS := controlplane/apiserver:FuzzDecodeBody controlplane/apiserver:FuzzApplyPatch \
	controlplane/apiserver:FuzzRequestAttributes controlplane/registry:FuzzSelectors \
	dns:FuzzAnswer dns:FuzzFastAnswer cni:FuzzParseConfig
FUZZTIME ?= 1m
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "==> fuzz $$name in ./$$pkg for $(FUZZTIME)"; \
		$(GO) test $(TAGS) -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg || exit 1; done

clean:
	rm -rf $(BIN)
