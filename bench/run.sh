#!/usr/bin/env bash
# pynish's benchmark against GNU timeout, prlimit and runlim: overhead, wall/CPU/memory limit precision,
# supervisor cost, scale. Installs its own peers, builds pynish (release) and the C helpers, runs every
# measurement side by side in one run, prints a markdown table and writes it to bench/RESULTS.md.
#
#   bench/run.sh                full run (~6-7 min on 2 cores)     -> bench/RESULTS.md
#   bench/run.sh --quick        smoke run (~2 min, few samples)    -> bench/out/RESULTS-quick.md
#   bench/run.sh --sections default,overhead,wall,cpu,memory,supervise,scale,figures   only those parts
#   bench/run.sh --no-install   do not call apt-get (the peers must already be there)
#   bench/run.sh --static       measure the static-pie build (`cargo build-static`) instead of the default one
#
# Needs: root (cgroup v1 memory group for the memory measurement, apt-get), gcc, python3 (stdlib only), cargo.
# CARGO_TARGET_DIR is honoured. Every process the benchmark starts runs below `harness guard`, a child
# subreaper that kills and reaps whatever is left when the run ends, however it ends.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
quick=0
install=1
static=0
sections=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --no-install) install=0 ;;
        --static) static=1 ;;
        --sections) sections="$2"; shift ;;
        --sections=*) sections="${1#*=}" ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- peers ---------------------------------------------------------------------------------------------
missing=()
for tool in runlim hyperfine; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
for tool in timeout prlimit gcc python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: $tool is required" >&2; exit 2; }
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$install" = 1 ]; then
        say "installing ${missing[*]} with apt-get"
        sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v runlim >/dev/null 2>&1 || { echo "run.sh: runlim is missing (apt-get install runlim)" >&2; exit 2; }
fi

# ---- builds ------------------------------------------------------------------------------------------------
# The build users get: `cargo install --path .` builds exactly this. `--static`: the static-pie build of
# .cargo/config.toml (x86_64 glibc only).
build=(build --release --bin pynish)
if [ "$static" = 1 ]; then
    build=(build-static)
fi
say "building pynish (cargo ${build[*]})"
# Cargo names the binary it built (CARGO_TARGET_DIR, a configured build target, ... all taken into account).
pynish=$(cd "$root" && cargo "${build[@]}" --message-format=json-render-diagnostics | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "pynish":
        print(m["executable"])')
[ -n "$pynish" ] && [ -x "$pynish" ] || { echo "run.sh: the build produced no pynish binary" >&2; exit 2; }

out="$here/out"
bin="$out/bin"
mkdir -p "$bin"
say "building the C helpers"
gcc -O2 -Wall -o "$bin/harness" "$here/src/harness.c"
gcc -O2 -Wall -pthread -o "$bin/load" "$here/src/load.c"

if [ "$quick" = 1 ]; then
    output="$out/RESULTS-quick.md"
else
    output="$here/RESULTS.md"
fi
raw="$out/raw-$(date +%Y%m%d-%H%M%S).json"

# ---- run -------------------------------------------------------------------------------------------------------
guard_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$guard_pid" ] && kill -0 "$guard_pid" 2>/dev/null; then
        kill -TERM "$guard_pid" 2>/dev/null || true
        wait "$guard_pid" 2>/dev/null || true
    fi
    # Groups the benchmark made (bench.py removes them; this catches an interrupted run's).
    for g in /sys/fs/cgroup/memory/bench-pynish-* /sys/fs/cgroup/memory/*/bench-pynish-* \
             /sys/fs/cgroup/memory/*/*/bench-pynish-*; do
        [ -d "$g" ] || continue
        kill -0 "${g##*-}" 2>/dev/null && continue   # another benchmark's, still running
        find "$g" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    if pgrep -f "^$bin/" >/dev/null 2>&1; then
        say "warning: benchmark helpers still alive: $(pgrep -f "^$bin/" | tr '\n' ' ')"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

args=(--harness "$bin/harness" --load "$bin/load" --pynish "$pynish" --output "$output" --raw "$raw")
[ "$quick" = 1 ] && args+=(--quick)
[ -n "$sections" ] && args+=(--sections "$sections")
say "running ($( [ "$quick" = 1 ] && echo quick || echo full )); results go to $output"
"$bin/harness" guard -- python3 "$here/bench.py" "${args[@]}" &
guard_pid=$!
wait "$guard_pid"
status=$?
guard_pid=""
exit "$status"
