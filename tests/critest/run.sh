#!/usr/bin/env bash
# Runs cri-tools' critest (v1.37.0, pinned by go.mod here) against a private
# containerd (the tests/containerd harness: Debian's containerd with its CRI
# plugin, runtimes runc and hull, a private CNI bridge) once per runtime
# handler, and writes both results side by side as markdown.
#
#   run.sh [-r] [-H HANDLERS] [-w WORKDIR] [-o DOC] [-t TIMEOUT] [-f FOCUS]
#
# HANDLERS is a comma-separated list (default runc,hull); each handler gets a
# fresh daemon and critest --runtime-handler=HANDLER --parallel=1. WORKDIR
# (default /var/cache/hull/critest) receives per handler report.json
# (ginkgo), critest.log and containerd.log. DOC defaults to
# docs/critest.md. TIMEOUT is each run's ginkgo suite timeout (default 45m).
# FOCUS is a ginkgo focus regex, for diagnosis. -r runs nothing: it
# rewrites DOC from the reports in WORKDIR (after editing notes.md).
#
# The specs that need a registry are skipped (TestCritest's critestSkip);
# every image the others use is built locally and imported under the name
# critest asks for. hull's shim reads $HULL_CONFIG, by default a config
# written to WORKDIR/hull.toml (accelerator $HULL_ACCEL, default auto; the
# image in $HULL_IMAGE_DIR, default /usr/local/share/hull).
#
# Needs root, Go, and what make critest builds first: bin/critest,
# bin/crictl, bin/containerd-shim-hull-v2 ($HULL_SHIM_BIN overrides).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
handlers=runc,hull work=/var/cache/hull/critest doc=$ROOT/docs/critest.md limit=45m focus= reportonly=
while getopts rH:w:o:t:f: opt; do
	case $opt in
	r) reportonly=1 ;;
	H) handlers=$OPTARG ;;
	w) work=$OPTARG ;;
	o) doc=$OPTARG ;;
	t) limit=$OPTARG ;;
	f) focus=$OPTARG ;;
	*) echo "usage: $0 [-r] [-H HANDLERS] [-w WORKDIR] [-o DOC] [-t TIMEOUT] [-f FOCUS]" >&2; exit 2 ;;
	esac
done
# The test runs in tests/containerd: make the paths absolute.
doc=$(realpath -m "$doc") work=$(realpath -m "$work")
for b in "$ROOT/bin/critest" "$ROOT/bin/crictl"; do
	[[ -x $b ]] || { echo "run.sh: $b missing (make critest-bin crictl)" >&2; exit 1; }
done
mkdir -p "$work"

if [[ -z ${HULL_CONFIG:-} ]]; then
	cat >"$work/hull.toml" <<CONF
[hypervisor]
accelerator = "${HULL_ACCEL:-auto}"
boot_timeout = "60s"

[image]
dir = "${HULL_IMAGE_DIR:-/usr/local/share/hull}"
CONF
	export HULL_CONFIG=$work/hull.toml
fi

# Generous: the suite timeout per handler, plus the daemons' set-up.
hours=$(( ($(tr ',' '\n' <<<"$handlers" | wc -l) + 1) ))h
cd "$ROOT"
HULL_INTEGRATION=1 \
HULL_CRITEST=$ROOT/bin/critest \
HULL_CRICTL=$ROOT/bin/crictl \
HULL_SHIM_BIN=${HULL_SHIM_BIN:-$ROOT/bin/containerd-shim-hull-v2} \
HULL_CRITEST_HANDLERS=$handlers \
HULL_CRITEST_WORK=$work \
HULL_CRITEST_OUT=$doc \
HULL_CRITEST_TIMEOUT=$limit \
HULL_CRITEST_FOCUS=$focus \
HULL_CRITEST_REPORT_ONLY=${reportonly:+1} \
	go test -count=1 -timeout "$hours" -run '^TestCritest$' -v ./tests/containerd
