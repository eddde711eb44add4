#!/usr/bin/env bash
# The README's demo: builds the examples in release mode, starts the TCP echo server on the
# backend runtime selection picks for this machine, runs the load client against it for
# about three seconds, then stops the server with SIGINT and shows what both measured.
#
#   bash scripts/demo.sh                 # defaults
#   DEMO_CONNECTIONS=64 DEMO_SIZE=16384 DEMO_DURATION=5 bash scripts/demo.sh
#   EV_BACKEND=epoll bash scripts/demo.sh   # force a backend (poll, epoll, io_uring)
#   DEMO_SCRATCH_PATH=.build-demo bash scripts/demo.sh   # build somewhere else than .build
#
# Works from a clean clone: scripts/setup.sh installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

connections="${DEMO_CONNECTIONS:-8}"
size="${DEMO_SIZE:-1024}"
duration="${DEMO_DURATION:-3}"

bash scripts/setup.sh

echo "==> building ev-echo-tcp, ev-echo-client and ev-echo-udp (release)"
build=(swift build -c release)
if [ -n "${DEMO_SCRATCH_PATH:-}" ]; then build+=(--scratch-path "$DEMO_SCRATCH_PATH"); fi
for product in ev-echo-tcp ev-echo-client ev-echo-udp; do
    "${build[@]}" --product "$product"
done
bin="$("${build[@]}" --show-bin-path)"

work="$(mktemp -d "${TMPDIR:-/tmp}/evloop-demo.XXXXXX")"
server_pid=""
cleanup() {
    # Only the server this script started; it is normally gone by now.
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "==> starting the echo server (port 0: the kernel picks a free one)"
"$bin/ev-echo-tcp" --host 127.0.0.1 --port 0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

# Wait up to 30 s for the machine-readable "listening on HOST:PORT" line.
port=""
for _ in $(seq 1 300); do
    if line="$(grep -m1 '^listening on ' "$work/server.out" 2>/dev/null)"; then
        port="${line#listening on }"
        port="${port%% *}"
        port="${port##*:}"
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "demo: the server did not start:" >&2
    cat "$work/server.out" "$work/server.err" >&2
    exit 1
fi
sed 's/^/server | /' "$work/server.out"
shown="$(wc -l <"$work/server.out")"

echo "==> ev-echo-client: $connections connections, $size-byte messages, ${duration} s"
set +e
"$bin/ev-echo-client" --host 127.0.0.1 --port "$port" --connections "$connections" \
    --size "$size" --duration "$duration" 2>&1 | sed 's/^/client | /'
client_status=${PIPESTATUS[0]}
set -e

# The client has closed its connections; give the server a moment to see those closes,
# so "open at shutdown" counts only connections that really were open at the signal
# (on a busy machine the server may not have been scheduled yet).
sleep 0.5
echo "==> stopping the server with SIGINT"
kill -INT "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
# What the server printed after its startup lines: the shutdown notice and the summary.
tail -n +"$((shown + 1))" "$work/server.out" | sed 's/^/server | /'
if [ -s "$work/server.err" ]; then sed 's/^/server stderr | /' "$work/server.err" >&2; fi

if [ "$client_status" -ne 0 ] || [ "$server_status" -ne 0 ]; then
    echo "demo: FAILED (client exit $client_status, server exit $server_status)" >&2
    exit 1
fi
echo "==> demo finished: client and server exited cleanly"
