#!/usr/bin/env bash
# Soak: runs the example echo servers (ev-echo-tcp, ev-echo-udp) on each backend under mixed
# load (scripts/soak-load.py: echo connections, resets with SO_LINGER 0, slow readers, half
# closes, UDP datagrams) and checks that the TCP server's descriptor count and resident
# memory stay flat. Not part of scripts/test.sh (it takes minutes); see docs/TESTING.md.
#
#   bash scripts/soak.sh                       # 60 s per backend, every backend
#   bash scripts/soak.sh --minutes 10          # longer
#   bash scripts/soak.sh --seconds 20 --backends epoll,poll
#
# Bounds (checked from samples of /proc/PID/fd and VmRSS every 2 s):
# - descriptors: during the load at most the idle count + the load's connections + 16 (each
#   client connection is one descriptor; accepted sockets still closing are the slack), and
#   once the load has ended and the server has had 2 s to see the last closes, exactly the
#   idle count again: one descriptor more is a leak;
# - memory: the highest RSS of the second half of the load at most 10 % + 4 MiB above the
#   highest of the first half. The server's memory is per connection (a 64 KiB ring and its
#   completions) plus glibc's per-thread arenas, so it reaches its working set within the
#   first seconds at a steady number of connections; what grows after that, in proportion
#   to the time, is a leak (the 4 MiB absorb an arena growing by one step, the 10 % noise).
# The servers must also exit with status 0 at SIGINT, and the load must see every echo
# intact. Exits 1 if any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
backends="io_uring,epoll,poll"
workers=4
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) seconds=$(( $2 * 60 )); shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --backends) backends="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

bash scripts/setup.sh
build=(swift build -c release)
if [ -n "${SOAK_SCRATCH_PATH:-}" ]; then build+=(--scratch-path "$SOAK_SCRATCH_PATH"); fi
echo "==> building ev-echo-tcp and ev-echo-udp (release)"
for product in ev-echo-tcp ev-echo-udp; do "${build[@]}" --product "$product"; done
bin="$("${build[@]}" --show-bin-path)"

work="$(mktemp -d "${TMPDIR:-/tmp}/evloop-soak.XXXXXX")"
pids=()
cleanup() {
    # Only the servers this script started.
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT

# Starts "$@" with stdout into $1.out; sets server_pid and server_port once it listens.
# (In this shell, not a subshell: the script waits for the server at the end.)
start_server() {
    local name="$1"; shift
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    local pid=$! line port=""
    for _ in $(seq 1 300); do
        if line="$(grep -m1 '^listening on ' "$work/$name.out" 2>/dev/null)"; then
            port="${line#listening on }"; port="${port%% *}"; port="${port##*:}"
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "soak: $name did not start:" >&2
        cat "$work/$name.out" "$work/$name.err" >&2
        return 1
    fi
    server_pid=$pid
    server_port=$port
}

fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

failed=0
IFS=',' read -r -a list <<<"$backends"
for backend in "${list[@]}"; do
    echo "==> $backend: ${seconds} s of mixed load"
    start_server "tcp-$backend" "$bin/ev-echo-tcp" --backend "$backend" --host 127.0.0.1 --port 0 --threads 2
    tcp_pid=$server_pid; tcp_port=$server_port; pids+=("$tcp_pid")
    start_server "udp-$backend" "$bin/ev-echo-udp" --backend "$backend" --host 127.0.0.1 --port 0
    udp_pid=$server_pid; udp_port=$server_port; pids+=("$udp_pid")
    sleep 0.5
    idle_fds=$(fds "$tcp_pid")
    echo "    server pid $tcp_pid, idle: $idle_fds descriptors, $(rss "$tcp_pid") KiB resident"

    python3 scripts/soak-load.py --port "$tcp_port" --udp-port "$udp_port" --seconds "$seconds" \
        --workers "$workers" >"$work/load-$backend.out" 2>&1 &
    load_pid=$!
    samples="$work/samples-$backend"
    : >"$samples"
    start=$(date +%s)
    while kill -0 "$load_pid" 2>/dev/null; do
        echo "$(( $(date +%s) - start )) $(fds "$tcp_pid") $(rss "$tcp_pid")" >>"$samples"
        sleep 2
    done
    load_status=0
    wait "$load_pid" || load_status=$?
    sed 's/^/    /' "$work/load-$backend.out"
    sleep 2
    end_fds=$(fds "$tcp_pid")

    # The checks (see the top of this file).
    connections=$(( workers * 4 ))
    verdict=$(awk -v idle="$idle_fds" -v conns="$connections" -v endfds="$end_fds" -v total="$seconds" '
        { t[NR] = $1; f[NR] = $2; r[NR] = $3 }
        END {
            maxf = 0; first = 0; second = 0
            for (i = 1; i <= NR; i++) {
                if (f[i] > maxf) maxf = f[i]
                if (t[i] < total / 2) { if (r[i] > first) first = r[i] } else { if (r[i] > second) second = r[i] }
            }
            ok = 1
            printf "    descriptors: idle %d, at most %d under load (bound %d), %d after the load\n", idle, maxf, idle + conns + 16, endfds
            printf "    resident KiB: highest %d in the first half, %d in the second (bound %d)\n", first, second, first * 1.10 + 4096
            if (maxf > idle + conns + 16) { print "    FAIL: too many descriptors under load"; ok = 0 }
            if (endfds != idle) { print "    FAIL: the descriptor count did not return to idle"; ok = 0 }
            if (second > first * 1.10 + 4096) { print "    FAIL: resident memory grew"; ok = 0 }
            print (ok ? "ok" : "fail")
        }' "$samples")
    echo "$verdict" | grep -v '^ok$\|^fail$' || true
    echo "    samples (s, descriptors, KiB): $(awk '{ printf "%s/%s/%s ", $1, $2, $3 }' "$samples")"
    [ "$(echo "$verdict" | tail -1)" = ok ] || failed=1
    if [ "$load_status" -ne 0 ]; then echo "    FAIL: the load client reported errors"; failed=1; fi

    for pid in "$tcp_pid" "$udp_pid"; do
        kill -INT "$pid"
        status=0
        wait "$pid" || status=$?
        if [ "$status" -ne 0 ]; then echo "    FAIL: server $pid exited with $status"; failed=1; fi
    done
    tail -n 3 "$work/tcp-$backend.out" | sed 's/^/    server | /'
    pids=()
done

if [ "$failed" -ne 0 ]; then echo "soak: FAILED" >&2; exit 1; fi
echo "soak: every backend stayed flat"
