#!/usr/bin/env bash
# Builds a static libseccomp against musl for the agent, which is linked
# with musl-gcc rather than glibc: a static glibc binary with cgo spends
# about 11 ms more of every sandbox's boot starting up under TCG, and is
# 0.8 MB larger in the initramfs. Debian packages libseccomp for glibc
# only, so this builds Debian's own source release (the orig tarball, its
# SHA-256 pinned here) with musl-gcc. Idempotent: nothing is done once the
# library of this version is in DIR.
#
#   scripts/build-libseccomp-musl.sh [DIR]    (default /var/cache/hull/musl)
#
# DIR gets lib/libseccomp.a, lib/pkgconfig/libseccomp.pc, include/seccomp.h
# and kinc/, the kernel's UAPI headers (linux, asm, asm-generic), which
# musl-gcc leaves out of its include path and cgo's C code needs.
set -euo pipefail
dir=${1:-/var/cache/hull/musl}
version=2.5.4
sha256=d82902400405cf0068574ef3dc1fe5f5926207543ba1ae6f8e7a1576351dcbdb
# The same tarball (the SHA-256 checks it): Debian's pool while bookworm
# is current, its snapshot archive for ever, and the upstream release.
urls=(
  "http://deb.debian.org/debian/pool/main/libs/libseccomp/libseccomp_${version}.orig.tar.gz"
  "https://snapshot.debian.org/archive/debian/20230103T205107Z/pool/main/libs/libseccomp/libseccomp_${version}.orig.tar.gz"
  "https://github.com/seccomp/libseccomp/releases/download/v${version}/libseccomp-${version}.tar.gz"
)
deps=(musl-tools gcc gperf make curl linux-libc-dev)

# Written last: a run that failed half-way leaves none, and the next
# builds again.
stamp=$dir/.libseccomp-$version
if [ -f "$stamp" ]; then
  exit 0
fi

missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-libseccomp-musl: installing ${missing[*]}" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$dir/kinc"
for d in linux asm-generic; do
  ln -sfn "/usr/include/$d" "$dir/kinc/$d"
done
asm=/usr/include/$(gcc -dumpmachine)/asm
[ -d "$asm" ] || { echo "build-libseccomp-musl: no kernel headers at $asm" >&2; exit 1; }
ln -sfn "$asm" "$dir/kinc/asm"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fetched=
for url in "${urls[@]}"; do
  echo "build-libseccomp-musl: fetching $url" >&2
  if curl -sSfL --retry 2 -o "$work/src.tar.gz" "$url" &&
    echo "$sha256  $work/src.tar.gz" | sha256sum -c --quiet - >&2; then
    fetched=1
    break
  fi
done
[ -n "$fetched" ] || { echo "build-libseccomp-musl: no source of libseccomp $version with SHA-256 $sha256" >&2; exit 1; }
tar -xzf "$work/src.tar.gz" -C "$work"
(
  cd "$work/libseccomp-$version"
  CC=musl-gcc CFLAGS="-O2 -isystem $dir/kinc" ./configure -q \
    --prefix="$dir" --enable-static --disable-shared >&2
  make -s -j"$(nproc)" -C src >/dev/null 2>&1
  # Staged, then moved into place: a failure leaves no half of it in dir.
  make -s -C src install DESTDIR="$work/stage" >/dev/null 2>&1
  make -s -C include install DESTDIR="$work/stage" >/dev/null
  make -s install-pkgconfDATA DESTDIR="$work/stage" >/dev/null
)
for sub in lib include; do
  rm -rf "${dir:?}/$sub"
  mv "$work/stage$dir/$sub" "$dir/$sub"
done
touch "$stamp"
echo "build-libseccomp-musl: $dir/lib/libseccomp.a" >&2
