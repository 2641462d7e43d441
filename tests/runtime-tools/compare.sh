#!/usr/bin/env bash
# Runs the runtime-tools validation suite (run.sh) against runc and hull on
# this machine and writes the comparison as markdown.
#
#   compare.sh [-o DOC] [-w WORKDIR] [-H HULL] [-R RUNC] [-s] [-f REGEX]
#
# DOC defaults to docs/runtime-tools.md, WORKDIR (verdicts and logs of each
# run) to /var/cache/hull/runtime-tools, HULL to /usr/local/bin/hull (the
# CLI that matches the installed guest image), RUNC to runc. -s adds a third,
# diagnostic run of hull with statx allowed in the bundles' seccomp profiles
# (run.sh -s). hull runs under TCG with the image in $HULL_IMAGE_DIR
# (default /usr/local/share/hull); each program gets 240 s with hull (TCG is ten or more times slower than the host)
# ($HULL_TIMEOUT), 30 s with runc ($RUNC_TIMEOUT). The hand-written analysis
# in tests/runtime-tools/analysis.md, if any, is appended to DOC.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
doc=$ROOT/docs/runtime-tools.md work=/var/cache/hull/runtime-tools
hull=/usr/local/bin/hull runc=runc statx= filter=
while getopts o:w:H:R:sf: opt; do
	case $opt in
	o) doc=$OPTARG ;;
	w) work=$OPTARG ;;
	H) hull=$OPTARG ;;
	R) runc=$OPTARG ;;
	s) statx=1 ;;
	f) filter=$OPTARG ;;
	*) echo "usage: $0 [-o DOC] [-w WORKDIR] [-H HULL] [-R RUNC] [-s] [-f REGEX]" >&2; exit 2 ;;
	esac
done
mkdir -p "$work"
fargs=()
[[ -n $filter ]] && fargs=(-f "$filter")

cat >"$work/hull.toml" <<EOF
[hypervisor]
accelerator = "tcg"
boot_timeout = "60s"

[image]
dir = "${HULL_IMAGE_DIR:-/usr/local/share/hull}"
EOF

t0=$SECONDS
"$HERE/run.sh" "${fargs[@]}" -t "${RUNC_TIMEOUT:-30}" -o "$work/runc" runc "$runc"
t1=$SECONDS
"$HERE/run.sh" "${fargs[@]}" -t "${HULL_TIMEOUT:-240}" -o "$work/hull" hull "$hull" --config "$work/hull.toml"
t2=$SECONDS
if [[ -n $statx ]]; then
	"$HERE/run.sh" "${fargs[@]}" -s -t "${HULL_TIMEOUT:-240}" -o "$work/hull-statx" hull "$hull" --config "$work/hull.toml"
else
	rm -rf "$work/hull-statx"
fi
t3=$SECONDS

"$HERE/report.sh" "$work" $((t1 - t0)) $((t2 - t1)) $((t3 - t2)) "$hull" "$runc" >"$doc.tmp"
if [[ -f $HERE/analysis.md ]]; then
	cat "$HERE/analysis.md" >>"$doc.tmp"
fi
mv "$doc.tmp" "$doc"
echo "compare.sh: wrote $doc" >&2
