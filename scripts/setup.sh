#!/usr/bin/env bash
# Prepares a Debian 12 host for hull, idempotently: installs the packages
# hull and its tests need, builds and installs the binaries, and builds the
# guest image. Run as root from anywhere: sudo scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  make git ca-certificates
  qemu-system-x86 qemu-system-common   # QEMU, and virtiofsd in /usr/lib/qemu
  busybox-static cpio                  # test rootfs and image inspection
  runc iproute2                        # reference runtime; netns, veth, tc
  protobuf-compiler                    # make proto
  gcc libc6-dev libseccomp-dev         # hull-init (static C); the seccomp unit tests (cgo, libseccomp)
  musl-tools gperf curl pkgconf        # the agent: cgo with musl, and libseccomp built for it
  podman conmon containernetworking-plugins  # podman --runtime hull, and its tests
  containerd iptables                  # tests/containerd and make critest (private daemons; portmap)
)

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (it installs packages and /usr/local files)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The tests start private containerd daemons (own config, sockets, root,
  # state, CNI), so a system containerd would do no harm, but it is not
  # needed: where this install enabled and started Debian's unit, turn it
  # off again. A containerd that was installed before is left as it was.
  if [[ " ${missing[*]} " == *" containerd "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now containerd.service || true
  fi
fi

# Go: the version go.mod names. Debian 12's golang is older, so a Go from
# go.dev (as on this project's machines, /usr/local/go) is expected.
export PATH=$PATH:/usr/local/go/bin
want=$(awk '/^go /{print $2}' go.mod)
if ! command -v go >/dev/null; then
  echo "setup: Go $want or newer is required (install it under /usr/local/go)" >&2
  exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
  echo "setup: Go $have is older than $want, which go.mod requires" >&2
  exit 1
fi

make build install image
/usr/local/bin/hull check || true
