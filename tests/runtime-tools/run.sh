#!/usr/bin/env bash
# Runs the OCI runtime-tools (v0.9.0) validation programs against one
# runtime and writes a verdict per program.
#
#   run.sh [-t SECONDS] [-o OUTDIR] [-f REGEX] NAME RUNTIME-BINARY [RUNTIME-ARGS...]
#
# NAME is a label (hull, runc); RUNTIME-BINARY and RUNTIME-ARGS are what the
# suite's $RUNTIME runs, through a wrapper that adds --root (a fresh state
# directory per program). OUTDIR (default ./runtime-tools-NAME) receives
#   verdicts.tsv     test <TAB> pass|fail|timeout <TAB> reason
#   logs/TEST.tap    the program's stdout (TAP), logs/TEST.err its stderr,
#   logs/TEST.rt     each runtime call: argv, exit status, stderr (not for
#                    create/run, whose stdio is the container's)
# -f runs only the programs whose name matches REGEX; -t is each program's
# time limit (default 120). -s is a diagnostic, not part of the suite: before
# each create/run, the wrapper adds statx to the allowed syscalls of the
# bundle's seccomp profile (runtime-tools v0.9.0's default profile predates
# statx, which runc >= 1.4's init calls after seccomp is in force).
#
# Each program runs in its own mount namespace (unshare -m, private
# propagation): some tests leave proc/sys mounts under their bundle, one
# bind-mounts the host's /etc. After each program, still inside its
# namespace, containers left in its state directory are deleted with
# --force and mounts under its scratch directory are unmounted; a scratch
# directory is removed only when /proc/mounts shows nothing under it.
#
# The programs are built once from the module in this directory (go.mod
# pins runtime-tools v0.9.0 and the old dependencies it builds with) into
# $RT_BUILD_DIR (default tests/runtime-tools/.build), rebuilt when go.mod or
# go.sum change. Needs root, go, unshare, tar.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${RT_BUILD_DIR:-$HERE/.build}
MODULE=github.com/opencontainers/runtime-tools

# --- inner mode: one program, inside its own mount namespace -------------
if [[ ${1:-} == --inner ]]; then
	# --inner TESTDIR PROGRAM TIMEOUT WRAPPER STATEROOT
	tdir=$2 prog=$3 limit=$4 wrapper=$5 root=$6
	cd "$tdir/cwd"
	set +e
	RUNTIME=$wrapper TMPDIR=$tdir/tmp RT_ROOT=$root RT_LOG=$tdir/rt.log \
		timeout -k 10 "$limit" "$prog" >"$tdir/tap" 2>"$tdir/err" </dev/null
	echo $? >"$tdir/rc"
	# Containers the program left behind (a failed or timed-out test).
	ids=$(RT_ROOT=$root RT_LOG=$tdir/rt.log timeout 30 "$wrapper" list -q 2>/dev/null)
	for id in $ids; do
		echo "cleanup: delete --force $id" >>"$tdir/cleanup"
		RT_ROOT=$root RT_LOG=$tdir/rt.log timeout 90 "$wrapper" delete --force "$id" >>"$tdir/cleanup" 2>&1
		# A VM whose supervisor did not take it down (hull names VMs hull-<id>).
		for pid in $(pgrep -f -- "-name hull-$id"); do
			tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-name hull-$id " || continue
			echo "cleanup: kill VM pid $pid of $id" >>"$tdir/cleanup"
			kill -KILL "$pid"
		done
	done
	# Unmount what is left under the scratch directory, deepest first.
	for _ in 1 2 3; do
		mnts=$(awk -v p="$tdir/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r)
		[[ -z $mnts ]] && break
		for m in $mnts; do
			echo "cleanup: umount $m" >>"$tdir/cleanup"
			umount -l "$m" 2>>"$tdir/cleanup"
		done
	done
	exit 0
fi

usage() { echo "usage: $0 [-s] [-t SECONDS] [-o OUTDIR] [-f REGEX] NAME RUNTIME-BINARY [ARGS...]" >&2; exit 2; }
limit=120 out= filter= statx=
while getopts t:o:f:s opt; do
	case $opt in
	s) statx=1 ;;
	t) limit=$OPTARG ;;
	o) out=$OPTARG ;;
	f) filter=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -ge 2 ]] || usage
name=$1 bin=$2
shift 2
out=${out:-$PWD/runtime-tools-$name}
[[ $(id -u) == 0 ]] || { echo "run.sh: needs root" >&2; exit 1; }
bin=$(command -v "$bin") || { echo "run.sh: runtime $2 not found" >&2; exit 1; }

# --- build (once) --------------------------------------------------------
build() {
	local stamp
	stamp=$(cat "$HERE/go.mod" "$HERE/go.sum" | sha256sum | cut -d' ' -f1)
	if [[ -f $BUILD/stamp && $(cat "$BUILD/stamp") == "$stamp" && -x $BUILD/runtimetest ]]; then
		return
	fi
	echo "run.sh: building runtime-tools validation programs into $BUILD" >&2
	rm -rf "$BUILD/bin" "$BUILD/stamp"
	mkdir -p "$BUILD/bin"
	(
		cd "$HERE"
		# runtimetest runs inside the containers' rootfs: static.
		export CGO_ENABLED=0 GOFLAGS=-mod=readonly GOWORK=off
		go build -trimpath -o "$BUILD/runtimetest" $MODULE/cmd/runtimetest
		go build -trimpath -o "$BUILD/bin/" $MODULE/validation/...
		dir=$(go list -m -f '{{.Dir}}' $MODULE)
		cp "$dir/rootfs-amd64.tar.gz" "$BUILD/"
		chmod u+w "$BUILD/rootfs-amd64.tar.gz"
	)
	echo "$stamp" >"$BUILD/stamp"
}
build

# --- run -----------------------------------------------------------------
scratch=$(mktemp -d "${RT_SCRATCH:-/var/tmp}/hull-runtime-tools-$name.XXXXXX")
# State roots apart and short: hull puts unix sockets under them (108 bytes
# at most for a socket path, with a 36-character container id in it).
roots=$(mktemp -d /run/hrt.XXXXXX)
mkdir -p "$out/logs"
: >"$out/verdicts.tsv"
# What ran (others may reinstall the runtime later).
if "$bin" version >/dev/null 2>&1; then "$bin" version; else "$bin" --version; fi 2>/dev/null | head -1 >"$out/runtime-version" || true

# The suite runs "$RUNTIME <verb> ...": the wrapper adds the state root
# and the fixed arguments, and logs each call.
wrapper=$scratch/runtime
{
	echo '#!/usr/bin/env bash'
	printf 'bin=%q\n' "$bin"
	if [[ $# -gt 0 ]]; then printf 'fixed=(%s)\n' "$(printf '%q ' "$@")"; else echo 'fixed=()'; fi
	printf 'statx=%q\n' "$statx"
	cat <<'EOF'
verb=
for a in "$@"; do case $a in -*) ;; *) verb=$a; break ;; esac; done
if [[ $verb == create || $verb == run ]]; then
	if [[ -n $statx ]]; then
		bundle=.
		prev=
		for a in "$@"; do
			case $prev in --bundle|-b) bundle=$a ;; esac
			case $a in --bundle=*|-b=*) bundle=${a#*=} ;; esac
			prev=$a
		done
		c=$bundle/config.json
		if [[ -f $c ]] && jq -e '.linux.seccomp.syscalls' "$c" >/dev/null 2>&1; then
			jq '.linux.seccomp.syscalls += [{"names": ["statx"], "action": "SCMP_ACT_ALLOW"}]' "$c" >"$c.statx" &&
				cat "$c.statx" >"$c" && rm -f "$c.statx"
			echo "$(date +%T.%3N) (harness: statx allowed in $c)" >>"$RT_LOG"
		fi
	fi
	# The container's stdio is ours: leave it alone.
	"$bin" "${fixed[@]}" --root "$RT_ROOT" "$@"
	rc=$?
	printf '%s %s -> %d\n' "$(date +%T.%3N)" "$*" "$rc" >>"$RT_LOG"
	exit $rc
fi
errf=$(mktemp)
"$bin" "${fixed[@]}" --root "$RT_ROOT" "$@" 2>"$errf"
rc=$?
cat "$errf" >&2
{ printf '%s %s -> %d\n' "$(date +%T.%3N)" "$*" "$rc"; sed 's/^/    stderr: /' "$errf"; } >>"$RT_LOG"
rm -f "$errf"
exit $rc
EOF
} >"$wrapper"
chmod +x "$wrapper"

# TAP -> verdict. Fails: a non-zero exit, a "not ok" line, "Bail out!", no
# plan, or a plan of 0 tests with an error diagnostic (the hook tests
# report failures only that way). The reason is the first failing line and
# the first error/stderr of its diagnostic.
verdict() { # tapfile rc errfile
	awk -v rc="$2" -v errf="$3" '
	function flush() { if (indiag && target && reason_extra == "" && diag != "") reason_extra = diag }
	/^ok / { if ($0 ~ /# *[Ss][Kk][Ii][Pp]/) skips++; else oks++; indiag = 0; next }
	/^not ok / { notok++; if (!first) { first = $0; target = 1 } else target = 0; indiag = 0; next }
	/^Bail out!/ { bail = $0; next }
	/^1\.\.[0-9]+/ { plan = $0; split($0, p, /\.\./); planned = p[2] + 0; next }
	/^  ---/ { indiag = 1; next }
	/^  \.\.\./ { indiag = 0; target = 0; next }
	indiag && /^ +"?(error|stderr)"?:/ {
		line = $0; sub(/^ +/, "", line)
		if (target && reason_extra == "") reason_extra = line
		if (!errdiag) errdiag = line
		# a multi-line value: take the next line too
		next
	}
	indiag && errdiag ~ /: \|-?$/ && !errdiag2 { errdiag2 = $0; sub(/^ +/, "", errdiag2) }
	indiag && reason_extra ~ /: \|-?$/ && !extra2 { extra2 = $0; sub(/^ +/, "", extra2) }
	END {
		if (reason_extra ~ /: \|-?$/) reason_extra = reason_extra " " extra2
		if (errdiag ~ /: \|-?$/) errdiag = errdiag " " errdiag2
		v = "pass"; r = ""
		if (rc == 124 || rc == 137) { v = "timeout"; r = "no result in the time limit" (first ? "; " first : "") }
		else if (first) { v = "fail"; r = first (reason_extra ? " | " reason_extra : "") }
		else if (bail) { v = "fail"; r = bail }
		else if (rc != 0) {
			v = "fail"; r = "exit status " rc
			# the runtime error if it printed one, else the last line
			while ((getline l < errf) > 0) {
				if (l != "") last = l
				if (!rterr && (l ~ /^hull: / || l ~ /level=error/)) rterr = l
			}
			if (rterr) r = r ": " rterr
			else if (last) r = r ": " last
		}
		else if (!plan) { v = "fail"; r = "no TAP plan" }
		else if (oks + skips == 0 && errdiag) { v = "fail"; r = "empty plan with diagnostic: " errdiag }
		else if (oks == 0 && skips > 0) r = "all " skips " skipped"
		else if (skips > 0) r = (oks + 0) " ok, " skips " skipped"
		else if (oks == 0) r = "empty plan, no error diagnostic"
		else r = (oks + 0) " ok"
		gsub(/\t/, " ", r)
		if (length(r) > 400) r = substr(r, 1, 400) "..."
		print v "\t" r
	}' "$1"
}

progs=$(cd "$BUILD/bin" && ls)
[[ -n $filter ]] && progs=$(grep -E -- "$filter" <<<"$progs" || true)
total=$(wc -w <<<"$progs")
n=0 start_all=$SECONDS
for p in $progs; do
	n=$((n + 1))
	tdir=$scratch/$p
	mkdir -p "$tdir/cwd" "$tdir/tmp" "$roots/$n"
	# A copy: the suite copies it into each bundle, and would copy a symlink as one.
	cp "$BUILD/runtimetest" "$tdir/cwd/runtimetest"
	ln -s "$BUILD/rootfs-amd64.tar.gz" "$tdir/cwd/rootfs-amd64.tar.gz"
	: >"$tdir/rt.log"
	t0=$SECONDS
	unshare -m --propagation private -- "$HERE/run.sh" --inner "$tdir" "$BUILD/bin/$p" "$limit" "$wrapper" "$roots/$n" || true
	secs=$((SECONDS - t0))
	rc=$(cat "$tdir/rc" 2>/dev/null || echo 255)
	cp "$tdir/tap" "$out/logs/$p.tap"
	cp "$tdir/err" "$out/logs/$p.err"
	{ cat "$tdir/rt.log"; [[ -f $tdir/cleanup ]] && cat "$tdir/cleanup"; } >"$out/logs/$p.rt"
	v=$(verdict "$tdir/tap" "$rc" "$tdir/err")
	printf '%s\t%s\n' "$p" "$v" >>"$out/verdicts.tsv"
	printf '[%2d/%d] %-40s %-7s %3ds\n' "$n" "$total" "$p" "${v%%$'\t'*}" "$secs" >&2

	# Processes the program left (e.g. unshare ... sleep, started by the
	# namespace tests) keep its namespace alive: end those whose working
	# directory or command line is under this program's scratch directory.
	for pid in $(ls /proc | grep -E '^[0-9]+$'); do
		[[ $pid == $$ ]] && continue
		cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || continue
		cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
		if [[ $cwd == "$tdir"* || $cmd == *"$tdir/"* ]]; then
			echo "cleanup: kill leftover pid $pid ($cmd)" >>"$out/logs/$p.rt"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	# Remove the scratch directory only when nothing is mounted under it.
	if awk -v p="$tdir/" 'index($2, p) == 1 {f = 1} END {exit !f}' /proc/mounts; then
		echo "run.sh: mounts left under $tdir; not removing it" >&2
	else
		rm -rf --one-file-system "$tdir"
	fi
	if awk -v p="$roots/$n/" 'index($2, p) == 1 {f = 1} END {exit !f}' /proc/mounts; then
		echo "run.sh: mounts left under $roots/$n; not removing it" >&2
	else
		rm -rf --one-file-system "$roots/$n"
	fi
done
if ! awk -v p="$scratch/" 'index($2, p) == 1 {f = 1} END {exit !f}' /proc/mounts; then
	rm -rf --one-file-system "$scratch"
fi
rmdir "$roots" 2>/dev/null || echo "run.sh: $roots not empty, left in place" >&2
pass=$(awk -F'\t' '$2 == "pass"' "$out/verdicts.tsv" | wc -l)
echo "run.sh: $name passed $pass of $total in $((SECONDS - start_all))s; verdicts in $out/verdicts.tsv" >&2
