# Benchmarks/http.sh: the http group of run.sh (sourced by it, not run): wrk against
# ev-http and its peers. See BENCHMARKS.md, "http".
#
# Servers, each answering wrk's keep-alive GET / with the same 78-byte "Hello, World!"
# response: ev-http on every backend (evloop/BACKEND), ev-http-async when it was built
# (evloop/BACKEND/async), SwiftNIO's NIOHTTP1 (niobench http-server: swiftnio), libuv
# (c/uv_http.c: libuv/epoll), and the C floors (c/http_floor.c: c/epoll, c/io_uring with
# multishot accept and multishot receive into a provided-buffer ring).
#
# Configurations (the bench names): http-cN-pinned, one server thread pinned to CPU 0 with
# wrk (one thread) pinned to CPU 1; http-cN-t2, two server threads and two wrk threads,
# nothing pinned; N = 50 and 500 connections. Each run measures, for HTTP_SECONDS seconds:
# requests/s and the request count (wrk), the server's CPU time per request (utime + stime
# from /proc/PID/stat before and after the wrk run, divided by wrk's request count), p50
# and p99 latency (wrk --latency) and errors (non-2xx responses and socket errors).
#
# Uses from run.sh: run-time variables BIN MAIN_BIN CBIN OUT RESULTS LOG AVAILABLE, and
# HTTP_SECONDS, HTTP_CONNS.

# http_build: the C servers (run.sh builds ev-http and niobench with the Swift products),
# and wrk and libuv1-dev from Debian when missing.
http_build() {
    if ! command -v wrk > /dev/null 2>&1; then
        echo "== installing wrk (the http group's load generator)"
        apt_install wrk || true
    fi
    cc -O2 -Wall -Wextra -o "$CBIN/http_floor" "$HERE/c/http_floor.c" -luring -lpthread || return 1
    if ! dpkg -s libuv1-dev > /dev/null 2>&1 || ! command -v pkg-config > /dev/null; then
        echo "== installing libuv1-dev (the libuv http peer)"
        apt_install libuv1-dev pkg-config
    fi
    rm -f "$CBIN/uv_http"
    # shellcheck disable=SC2046
    cc -O2 -Wall -Wextra -o "$CBIN/uv_http" "$HERE/c/uv_http.c" $(pkg-config --cflags --libs libuv) -lpthread ||
        echo "run.sh: the libuv http peer did not build: left out" >&2
}

# The server's CPU time so far, in clock ticks (utime + stime: fields 14 and 15 of
# /proc/PID/stat; the command name, field 2, has no spaces for these programs).
http_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null; }

# A wrk latency ("320.00us", "1.20ms", "2.01s") in µs.
http_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n
    }'
}

# http_run ROUND BENCH IMPL CONNS THREADS COMMAND...: starts the server, waits for its
# "listening on HOST:PORT" line, runs wrk against it, stops it with SIGINT and writes a
# RESULT (or FAILED) line.
http_run() {
    local round=$1 bench=$2 impl=$3 conns=$4 threads=$5
    shift 5
    # A fresh log per run, made here: the server's own redirection could come after this
    # script already read the previous run's "listening on" line (and its port).
    local slog="$OUT/http-server.txt"
    rm -f "$slog"
    : > "$slog"
    local pin=() wpin=() wthreads=2
    if [ "$threads" = pinned ]; then
        pin=(taskset -c 0)
        wpin=(taskset -c 1)
        wthreads=1
    fi
    # taskset execs the server: $! is the server's own PID.
    "${pin[@]}" "$@" > "$slog" 2>&1 &
    local server=$! port
    port=$(server_port "$slog" 200)
    if [ -z "$port" ]; then
        echo "   $bench [$impl]: server did not start (see log.txt)"
        cat "$slog" >> "$LOG"
        echo "FAILED bench=$bench impl=$impl reason=server round=$round" >> "$RESULTS"
        kill "$server" 2>/dev/null; wait "$server" 2>/dev/null
        return
    fi
    local before after out rc
    before=$(http_cpu_ticks "$server")
    out=$(timeout $((HTTP_SECONDS + 30)) "${wpin[@]}" wrk -t"$wthreads" -c"$conns" -d"${HTTP_SECONDS}s" --latency \
        "http://127.0.0.1:$port/" 2>&1)
    rc=$?
    after=$(http_cpu_ticks "$server")
    kill -INT "$server" 2>/dev/null
    # A server that does not stop within 20 s is killed (and the run still counts: wrk's
    # figures are taken; the log says so).
    local waited=0
    while kill -0 "$server" 2>/dev/null && [ $waited -lt 200 ]; do sleep 0.1; waited=$((waited + 1)); done
    if kill -0 "$server" 2>/dev/null; then
        echo "   $bench [$impl]: server did not stop on SIGINT; killed" | tee -a "$LOG"
        kill -9 "$server" 2>/dev/null
    fi
    wait "$server" 2>/dev/null
    { echo "== $bench $impl round $round"; cat "$slog"; printf '%s\n' "$out"; } >> "$LOG"
    local requests seconds rps p50 p99 non2xx sockerr
    requests=$(printf '%s\n' "$out" | sed -n 's/^ *\([0-9][0-9]*\) requests in \([0-9.]*\)\(m*s\).*/\1/p')
    seconds=$(printf '%s\n' "$out" | sed -n 's/^ *[0-9][0-9]* requests in \([0-9.]*[a-z]*\),.*/\1/p')
    rps=$(printf '%s\n' "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
    p50=$(printf '%s\n' "$out" | sed -n 's/^ *50% *\([0-9.]*[a-z]*\).*/\1/p')
    p99=$(printf '%s\n' "$out" | sed -n 's/^ *99% *\([0-9.]*[a-z]*\).*/\1/p')
    non2xx=$(printf '%s\n' "$out" | sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p')
    sockerr=$(printf '%s\n' "$out" | sed -n 's/^ *Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' |
        awk '{ print $1 + $2 + $3 + $4 }')
    if [ $rc -ne 0 ] || [ -z "$requests" ] || [ -z "$rps" ] || [ "$requests" = 0 ]; then
        echo "   $bench [$impl]: FAILED (wrk exit $rc; see log.txt)"
        echo "FAILED bench=$bench impl=$impl rc=$rc round=$round" >> "$RESULTS"
        return
    fi
    non2xx=${non2xx:-0}
    sockerr=${sockerr:-0}
    local cpu_us
    cpu_us=$(awk -v a="$before" -v b="$after" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
        'BEGIN { if (a == "" || b == "") print "na"; else printf "%.3f", (b - a) * 1e6 / hz / n }')
    local p50us p99us
    p50us=$(http_us "$p50")
    p99us=$(http_us "$p99")
    echo "   $bench [$impl]: $rps requests/s, server CPU $cpu_us µs/request, p50 $p50, p99 $p99, errors $((non2xx + sockerr))"
    echo "RESULT bench=$bench impl=$impl value=$rps unit=requests/s op=request ops=$requests seconds=$(http_us "$seconds" | awk '{ print $1 / 1e6 }') cpu_us_per_op=$cpu_us allocs_per_op=na p50_us=$p50us p99_us=$p99us errors=$((non2xx + sockerr)) non2xx=$non2xx socket_errors=$sockerr connections=$conns threads=$threads round=$round" >> "$RESULTS"
}

# http_group ROUNDS: every configuration, implementations interleaved within each round.
http_group() {
    local rounds=$1 round conns threads b t
    if ! command -v wrk > /dev/null 2>&1; then
        echo "== http: wrk is not installed: group skipped" | tee -a "$LOG"
        echo "FAILED bench=http impl=wrk reason=missing" >> "$RESULTS"
        return
    fi
    echo "# http: wrk $(wrk -v 2>&1 | head -1 | awk '{ print $2 }') (Debian), ${HTTP_SECONDS} s per run, GET / keep-alive" >> "$RESULTS"
    for round in $(seq 1 "$rounds"); do
        echo "== http (wrk, ${HTTP_SECONDS} s per run), round $round of $rounds"
        for threads in pinned 2; do
            t=$([ "$threads" = pinned ] && echo 1 || echo 2)
            for conns in $HTTP_CONNS; do
                local bench="http-c$conns-$([ "$threads" = pinned ] && echo pinned || echo t2)"
                for b in $AVAILABLE; do
                    http_run "$round" "$bench" "evloop/$b" "$conns" "$threads" \
                        "$MAIN_BIN/ev-http" --backend "$b" --threads "$t" --port 0 --idle-timeout 0
                    if [ -x "$MAIN_BIN/ev-http-async" ]; then
                        http_run "$round" "$bench" "evloop/$b/async" "$conns" "$threads" \
                            "$MAIN_BIN/ev-http-async" --backend "$b" --threads "$t" --port 0 --idle-timeout 0
                    fi
                done
                http_run "$round" "$bench" swiftnio "$conns" "$threads" "$BIN/niobench" http-server --port 0 --threads "$t"
                [ -x "$CBIN/uv_http" ] && http_run "$round" "$bench" libuv/epoll "$conns" "$threads" "$CBIN/uv_http" --port 0 --threads "$t"
                for mode in epoll io_uring; do
                    http_run "$round" "$bench" "c/$mode" "$conns" "$threads" "$CBIN/http_floor" --mode "$mode" --port 0 --threads "$t"
                done
            done
        done
    done
}
