# smolvm: `make demo` and `make test` work on a fresh machine (they install
# what is missing); `make build` puts the binaries in bin/.
GO      ?= go
BIN     := $(CURDIR)/bin
PKGS    := ./...

.PHONY: all build deps lint test test-unit test-kvm demo clean

all: build

deps:
	@./scripts/deps.sh

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Unit and integration tests that need no KVM (FUSE and userfaultfd run on the
# host as root). KVM tests skip here unless the host has hardware KVM; test-kvm
# runs them for real.
test-unit: deps
	$(GO) test -count=1 -timeout 15m $(PKGS)

# KVM tests: directly with hardware KVM, otherwise inside the lab VM
# (docs/LAB.md). Never skipped silently.
test-kvm: deps build
	@./scripts/test-kvm.sh

test: lint test-unit test-kvm

demo: deps build
	@./scripts/demo.sh

clean:
	rm -rf $(BIN)
