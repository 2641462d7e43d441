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
url=http://deb.debian.org/debian/pool/main/libs/libseccomp/libseccomp_${version}.orig.tar.gz
deps=(musl-tools gperf make curl linux-libc-dev)

stamp=$dir/.libseccomp-$version
if [ -f "$stamp" ] && [ -f "$dir/lib/libseccomp.a" ]; then
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
ln -sfn "/usr/include/$(gcc -dumpmachine)/asm" "$dir/kinc/asm"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "build-libseccomp-musl: fetching libseccomp $version" >&2
curl -sSfL --retry 3 -o "$work/src.tar.gz" "$url"
echo "$sha256  $work/src.tar.gz" | sha256sum -c --quiet -
tar -xzf "$work/src.tar.gz" -C "$work"
(
  cd "$work/libseccomp-$version"
  CC=musl-gcc CFLAGS="-O2 -isystem $dir/kinc" ./configure -q \
    --prefix="$dir" --enable-static --disable-shared >&2
  make -s -j"$(nproc)" -C src >/dev/null
  make -s -C src install >/dev/null
  make -s -C include install >/dev/null
  make -s install-pkgconfDATA >/dev/null
)
touch "$stamp"
echo "build-libseccomp-musl: $dir/lib/libseccomp.a" >&2
