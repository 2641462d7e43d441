# hull: build, install, test and benchmark. `scripts/setup.sh` (make setup)
# prepares a fresh Debian 12 host; `make test` runs every test.

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
LIBEXECDIR  ?= $(PREFIX)/libexec/hull
IMAGE_DIR   ?= $(PREFIX)/share/hull
CACHE_DIR   ?= /var/cache/hull
GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
PKG         := github.com/hull-runtime/hull
LDFLAGS     := -s -w -X $(PKG)/internal/version.Version=$(VERSION) -X $(PKG)/internal/version.Commit=$(COMMIT)
# Every binary is static: the agent must be (it is the initramfs' only
# program), and static host binaries install anywhere. The host binaries
# are pure Go (CGO_ENABLED=0).
GOBUILD     := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
# The agent links libcontainer's nsenter (C, run before the Go runtime in
# each container's init) and libseccomp, so it needs cgo, and is linked
# statically by the C linker: musl's (musl-gcc), whose static binaries
# start faster under TCG than glibc's, with a libseccomp built for musl
# (scripts/build-libseccomp-musl.sh) into MUSL_DIR.
MUSL_DIR    ?= $(CACHE_DIR)/musl
AGENTBUILD  := CC=musl-gcc CGO_ENABLED=1 CGO_CFLAGS="-O2 -isystem $(MUSL_DIR)/kinc" \
	PKG_CONFIG_LIBDIR=$(MUSL_DIR)/lib/pkgconfig \
	$(GO) build -tags 'netgo osusergo seccomp' -trimpath \
	-ldflags '-s -w -linkmode external -extldflags "-static" -X main.version=$(VERSION) -X main.commit=$(COMMIT)'
# hull-init (cmd/hull-init) sets up containers in the guest: plain C,
# static, so that the guest translates little code under TCG; with musl,
# like the agent (91 KB against glibc's 834 KB in the initramfs).
INITBUILD   := musl-gcc -O2 -static -s -Wall -Wextra -Werror -isystem $(MUSL_DIR)/kinc
TEST_TIMEOUT ?= 25m

.PHONY: all build musl install kernel image setup test test-unit test-integration proto bench-boot bench-run bench-pods lint clean

all: build

build: musl
	$(GOBUILD) -o bin/hull ./cmd/hull
	$(GOBUILD) -o bin/containerd-shim-hull-v2 ./cmd/containerd-shim-hull-v2
	$(AGENTBUILD) -o bin/hull-agent ./cmd/hull-agent
	$(INITBUILD) -o bin/hull-init cmd/hull-init/hull-init.c

# Idempotent: it returns at once once the library of its version is built.
musl:
	./scripts/build-libseccomp-musl.sh $(MUSL_DIR)

install: build
	install -D -m 0755 bin/hull $(DESTDIR)$(BINDIR)/hull
	install -D -m 0755 bin/containerd-shim-hull-v2 $(DESTDIR)$(BINDIR)/containerd-shim-hull-v2
	install -D -m 0755 bin/hull-agent $(DESTDIR)$(LIBEXECDIR)/hull-agent
	install -D -m 0755 bin/hull-init $(DESTDIR)$(LIBEXECDIR)/hull-init

# The guest kernel is hull's own (kernel/hull-guest.config and
# kernel/patches over Debian's linux-source-6.1, built by
# scripts/build-kernel.sh into KERNEL_DIR, once per change);
# GUEST_KERNEL=debian takes Debian's cloud kernel package instead.
GUEST_KERNEL ?= hull
KERNEL_DIR   ?= $(CACHE_DIR)/kernel

kernel:
	./scripts/build-kernel.sh $(KERNEL_DIR)

# The guest image is built from the installed agent so that what the runtime
# boots is what was installed.
ifeq ($(GUEST_KERNEL),debian)
image: install
	$(BINDIR)/hull image build --agent $(LIBEXECDIR)/hull-agent --container-init $(LIBEXECDIR)/hull-init --out $(IMAGE_DIR) --cache $(CACHE_DIR)
else ifeq ($(GUEST_KERNEL),hull)
image: install kernel
	$(BINDIR)/hull image build --agent $(LIBEXECDIR)/hull-agent --container-init $(LIBEXECDIR)/hull-init --out $(IMAGE_DIR) --kernel $(KERNEL_DIR)/bzImage
else
image:
	@echo "GUEST_KERNEL=$(GUEST_KERNEL): not hull or debian" >&2; exit 1
endif

setup:
	./scripts/setup.sh

test: test-unit test-integration

test-unit: build
	$(GO) vet ./...
	HULL_TEST_CACHE=$(CACHE_DIR) HULL_AGENT_BIN=$(CURDIR)/bin/hull-agent HULL_INIT_BIN=$(CURDIR)/bin/hull-init \
		$(GO) test -count=1 ./api/... ./internal/... ./cmd/...
	# The guest's seccomp code as the agent builds it (libseccomp).
	$(GO) test -count=1 -tags seccomp ./internal/guest/container/

# Integration tests boot real VMs from the installed image; HULL_INTEGRATION
# makes a missing prerequisite a failure instead of a skip. The containerd
# tests (tests/containerd) drive the CRI with crictl.
test-integration: build crictl test-busybox
	HULL_INTEGRATION=1 HULL_CRICTL=$(CURDIR)/bin/crictl HULL_BIN=$(CURDIR)/bin/hull HULL_AGENT_BIN=$(CURDIR)/bin/hull-agent \
		$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -p 1 ./tests/...

# Regenerates the API code with the pinned generators (go.mod tool lines)
# and Debian's protoc.
proto:
	$(GO) build -o .bin/ github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc google.golang.org/protobuf/cmd/protoc-gen-go
	PATH=$(CURDIR)/.bin:$$PATH protoc -I api \
		--go_out=api --go_opt=paths=source_relative \
		--go-ttrpc_out=api --go-ttrpc_opt=paths=source_relative \
		api/agent/v1/agent.proto

bench-boot: build
	$(GO) run ./bench/boot -image $(IMAGE_DIR) -cache $(CACHE_DIR)

bench-run: install
	$(GO) run ./bench/run -hull $(BINDIR)/hull -image $(IMAGE_DIR) -cache $(CACHE_DIR)

# Pods through the CRI (one private containerd of tests/containerd, crictl):
# start latency one at a time and 10 at once, and host memory per idle pod,
# hull against runc in the same run. BENCH_PODS_FLAGS adds flags, e.g.
# "-json pods.json" to write the figures, "-n 10".
BENCH_PODS_FLAGS ?=
bench-pods: build crictl
	HULL_CRICTL=$(CURDIR)/bin/crictl $(GO) run ./bench/pods -image $(IMAGE_DIR) $(BENCH_PODS_FLAGS)

clean:
	rm -rf bin .bin

# OCI runtime-tools validation (v0.9.0) against runc and hull on this host;
# writes docs/runtime-tools.md (verdicts and logs: $(CACHE_DIR)/runtime-tools).
# HULL defaults to the installed CLI, which matches the installed image;
# RUNTIME_TOOLS_FLAGS=-s adds a diagnostic hull run with statx allowed in
# the bundles' seccomp profiles (hull's agent now does that itself).
HULL ?= $(BINDIR)/hull
RUNTIME_TOOLS_FLAGS ?=
.PHONY: runtime-tools
runtime-tools:
	./tests/runtime-tools/compare.sh -H $(HULL) -w $(CACHE_DIR)/runtime-tools \
		-o $(CURDIR)/docs/runtime-tools.md $(RUNTIME_TOOLS_FLAGS)

# cri-tools v1.37.0 (pinned by tests/critest/go.mod): crictl for the
# containerd tests, critest (a ginkgo test binary) for make critest.
CRI_TOOLS_VERSION := v1.37.0
CRI_TOOLS_BUILD   := cd tests/critest && CGO_ENABLED=0 $(GO)
CRI_TOOLS_LDFLAGS := -s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$(CRI_TOOLS_VERSION)
.PHONY: crictl critest-bin critest
crictl:
	$(CRI_TOOLS_BUILD) build -trimpath -ldflags "$(CRI_TOOLS_LDFLAGS)" -o $(CURDIR)/bin/crictl sigs.k8s.io/cri-tools/cmd/crictl

critest-bin:
	$(CRI_TOOLS_BUILD) test -c -trimpath -ldflags "$(CRI_TOOLS_LDFLAGS)" -o $(CURDIR)/bin/critest sigs.k8s.io/cri-tools/cmd/critest

# critest against a private containerd (tests/containerd), with runtime
# handler runc and then hull; writes docs/critest.md (reports and logs:
# $(CACHE_DIR)/critest). CRITEST_HANDLERS=runc runs one handler.
CRITEST_HANDLERS ?= runc,hull
critest: build crictl critest-bin test-busybox
	./tests/critest/run.sh -H $(CRITEST_HANDLERS) -w $(CACHE_DIR)/critest -o $(CURDIR)/docs/critest.md

# The test images' busybox (tests/containerd): Debian's dynamically linked
# busybox, whose shell runs commands from PATH as the busybox of critest's
# images does (busybox-static's prefers its own applets). Not installed,
# since it conflicts with busybox-static: unpacked into
# $(CACHE_DIR)/busybox. Without it the images fall back to busybox-static.
.PHONY: test-busybox
test-busybox: $(CACHE_DIR)/busybox/bin/busybox
$(CACHE_DIR)/busybox/bin/busybox:
	rm -rf $(CACHE_DIR)/busybox.tmp && mkdir -p $(CACHE_DIR)/busybox.tmp
	cd $(CACHE_DIR)/busybox.tmp && apt-get download busybox && dpkg-deb -x busybox_*.deb root
	mkdir -p $(CACHE_DIR)/busybox/bin
	install -m 0755 $(CACHE_DIR)/busybox.tmp/root/bin/busybox $@
	rm -rf $(CACHE_DIR)/busybox.tmp
