#!/usr/bin/env bash
# Builds hull's guest kernel: Debian's linux-source-6.1 with the patches in
# kernel/patches, configured by `make tinyconfig` plus
# kernel/hull-guest.config, every driver built in. Idempotent: the kernel
# is rebuilt only when the source package's version, the patches or the
# config changed. Prints the bzImage's path on its last line.
#
#   scripts/build-kernel.sh [DIR]    (default /var/cache/hull/kernel)
#
# DIR keeps the source tree and its objects (about 1.6 GB), so that a changed
# config rebuilds only what it touches.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-/var/cache/hull/kernel}
config=$repo/kernel/hull-guest.config
srcpkg=linux-source-6.1
deps=("$srcpkg" bc bison flex libelf-dev libssl-dev gcc make xz-utils patch)

missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-kernel: installing ${missing[*]}" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

version=$(dpkg-query -W -f='${Version}' "$srcpkg")
patches=("$repo"/kernel/patches/*.patch)
[ -e "${patches[0]}" ] || patches=()
# The tree is the source version with these patches applied.
tree="$version $(cat /dev/null "${patches[@]}" | sha256sum | cut -d' ' -f1)"
key="$srcpkg $tree $(sha256sum "$config" | cut -d' ' -f1)"
out=$dir/bzImage
if [ -f "$out" ] && [ "$(cat "$dir/bzImage.key" 2>/dev/null)" = "$key" ]; then
  echo "build-kernel: $out is up to date ($srcpkg $version)" >&2
  echo "$out"
  exit 0
fi

mkdir -p "$dir"
src=$dir/$srcpkg
# A tree of another source version or patch set is replaced; it is a plain
# directory of sources and objects (nothing is ever mounted there).
if [ "$(cat "$dir/source.version" 2>/dev/null)" != "$tree" ]; then
  rm -rf "$src" "$dir/source.version"
  echo "build-kernel: unpacking $srcpkg $version ..." >&2
  tar -C "$dir" -xf "/usr/src/$srcpkg.tar.xz"
  for p in "${patches[@]}"; do
    echo "build-kernel: applying $(basename "$p")" >&2
    patch -s -p1 -d "$src" < "$p"
  done
  echo "$tree" > "$dir/source.version"
fi

cd "$src"
make -s tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m -O . .config "$config" >/dev/null 2>&1
make -s olddefconfig >/dev/null 2>&1
# Every line of the fragment must have survived: a dependency it lacks
# turns an option off without a word otherwise.
bad=0
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*) opt=${line%%=*} ;;
    "# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *} ;;
    *) continue ;;
  esac
  got=$(grep -E "^$opt=|^# $opt is not set" .config || echo "# $opt is not set")
  if [ "$got" != "$line" ]; then
    echo "build-kernel: $config wants '$line', the kernel's dependencies give '$got'" >&2
    bad=1
  fi
done < "$config"
[ "$bad" = 0 ] || exit 1

echo "build-kernel: building $srcpkg $version with $(nproc) jobs ..." >&2
# A fixed build user, host and number, and the source package's date as
# the build time, make the banner the same on every machine and rebuild.
KBUILD_BUILD_TIMESTAMP=$(date -u -r "/usr/src/$srcpkg.tar.xz" '+%Y-%m-%d %H:%M:%S UTC')
export KBUILD_BUILD_USER=hull KBUILD_BUILD_HOST=hull KBUILD_BUILD_TIMESTAMP KBUILD_BUILD_VERSION=1
make -s -j"$(nproc)" bzImage >&2
cp arch/x86/boot/bzImage "$out.tmp"
mv "$out.tmp" "$out"
echo "$key" > "$dir/bzImage.key"
echo "build-kernel: built $out" >&2
echo "$out"
