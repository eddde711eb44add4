#!/usr/bin/env bash
# Benchmarks/run.sh: builds EvLoop's benchmark suite (release) and runs all of it.
#
#   Benchmarks/run.sh            the full suite, 3 interleaved rounds (about 6-9 minutes)
#   Benchmarks/run.sh --quick    1 round, smaller counts (about 1-2 minutes)
#   Benchmarks/run.sh --libxev ../libxev     with libxev's suite as a peer (see below; its
#                                first build takes about 10 minutes, and its shipped counts
#                                add about 6-10 minutes per round)
#
# Options: --rounds N, --backends "io_uring epoll poll", --only "ping-pongs timers ...",
# --skip-build, --files-mb N (the file benchmark's file size, default 1024, 64 with --quick),
# --files-dir DIR (where its file lives; default the scratch directory, on the disk).
# --http-seconds N (each wrk run of the http group; default 5, 2 with --quick),
# --http-conns "50 500" (the http group's connection counts).
# Groups for --only: ping-pongs udp timers async pummel echo files http callgrind
# (callgrind, the user-space instructions per ping-pong roundtrip, is left out of --quick).
#   http: wrk (Debian's package, installed with apt-get when missing) against ev-http on
#        every backend (and ev-http-async), SwiftNIO's NIOHTTP1, libuv (c/uv_http.c) and
#        the C floors (c/http_floor.c: epoll; io_uring with multishot accept and receive
#        into a provided-buffer ring), at 50 and 500 connections, one server thread pinned
#        to CPU 0 with wrk on CPU 1, and two server threads unpinned (see http.sh).
#   files: 4 KiB O_DIRECT random reads of one file at queue depth 1 and 32: EvLoop on
#        io_uring (the polled or the main ring, as its probe decides; named in the results)
#        and on epoll (its thread pool), with fio (Debian's package, installed with apt-get
#        when missing; --ioengine=io_uring --direct=1 --rw=randread --bs=4k) as the floor.
#
# Peers in the same run (BENCHMARKS.md, "Peers"):
#   --libxev PATH (or LIBXEV_DIR=PATH)   a checkout of mitchellh/libxev: its own benchmarks
#        (peers/libxev.sh: Zig 0.16.0 from PyPI in a venv in the scratch directory,
#        ReleaseFast, io_uring and an epoll variant of each), run as libxev/io_uring and
#        libxev/epoll in the same rounds as EvLoop, pinned like EvLoop's counterpart.
#   --libxev-counts shipped|matched      libxev's own counts (500,000 roundtrips, 1,000,000
#        async pings per worker, ...; the default of a full run) or this run's counts
#        (the default with --quick); million-timers always runs this run's timer count.
#   libuv/epoll: c/uv_pingpong.c on Debian's libuv1-dev (installed with apt-get when
#        missing), in the ping-pongs group; --no-libuv leaves it out.
#   --libuv PATH (or LIBUV_DIR=PATH)     a libuv checkout: its own benchmark runner
#        (peers/libuv.sh, cmake -DLIBUV_BUILD_BENCH=ON) for ping_pongs, ping_udp1,
#        udp_pummel_1v1, async1 and async_pummel_1, as libuv-bench/epoll.
#
# What it does:
#   1. builds, in release mode, this package (evbench, niobench, bench-report) and the
#      main package's ev-echo-tcp and ev-echo-client (a path dependency), in one scratch
#      directory;
#   2. compiles c/pingpong.c (the plain-C ping-pong floor), c/async_notify.c (the
#      plain-C floor of async1..8: epoll and eventfds), c/uv_pingpong.c (libuv) and
#      c/malloc_count.c (the allocation counting shim, preloaded into every benchmark
#      process with LD_PRELOAD); builds libxev's suite when given a checkout;
#   3. runs every benchmark on every backend, interleaving implementations round by round
#      (A B C A B C ...); ping-pongs, ping-udp1, udp_pummel, async1..8 and
#      async_pummel_1 run pinned to CPU 0 with taskset (both ends on one CPU, see
#      BENCHMARKS.md, "How it is measured"); the timers, async_pummel_2/4/8 and the echo
#      throughput run unpinned; the peers (libxev, libuv) run in the same rounds, pinned
#      the same way as EvLoop's counterpart; async1 runs twice more, c/epoll and
#      evloop/epoll with glibc's rseq registration turned off (GLIBC_TUNABLES, rows
#      .../rseq-off), because libxev's binaries have no libc and so no rseq, whose update
#      at every return to user space after a context switch is part of async1's cost
#      (BENCHMARKS.md, "async1 and glibc's rseq");
#   4. writes every RESULT line to results/<time>/results.txt and the tables (medians,
#      ranges, ratios, targets) to results/<time>/report.md, and prints the report.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PROGRAM=run.sh
# shellcheck source=peers/common.sh
. "$HERE/peers/common.sh"
# shellcheck source=http.sh
. "$HERE/http.sh"
ROOT=$(dirname "$HERE")
SCRATCH=${EVBENCH_SCRATCH:-$HERE/.build-bench}
QUICK=0
ROUNDS=""
BACKENDS="io_uring epoll poll"
ONLY=""
BUILD=1
LIBXEV=${LIBXEV_DIR:-}
LIBXEV_COUNTS=""
LIBUV=${LIBUV_DIR:-}
WITH_UV=1
FILES_MB=""
FILES_DIR=""
HTTP_SECONDS=""
HTTP_CONNS="50 500"

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --backends) BACKENDS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --skip-build) BUILD=0 ;;
        --libxev) LIBXEV=$2; shift ;;
        --libxev-counts) LIBXEV_COUNTS=$2; shift ;;
        --libuv) LIBUV=$2; shift ;;
        --no-libuv) WITH_UV=0 ;;
        --files-mb) FILES_MB=$2; shift ;;
        --files-dir) FILES_DIR=$2; shift ;;
        --http-seconds) HTTP_SECONDS=$2; shift ;;
        --http-conns) HTTP_CONNS=$2; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    ONLY=${ONLY:-"ping-pongs udp timers async pummel echo files http"}
    ROUNDS=${ROUNDS:-1}
    HTTP_SECONDS=${HTTP_SECONDS:-2}
    FILES_MB=${FILES_MB:-64}; FILES_COUNT=20000
    PING_COUNT=20000; UDP_COUNT=50000; PUMMEL_COUNT=100000; TIMERS=200000
    REARM_ROUNDS=100; ASYNC_TOTAL=40000; APUMMEL_COUNT=50000; ECHO_SECONDS=1
    ECHO_CONNS="1 100 1000"
else
    ONLY=${ONLY:-"ping-pongs udp timers async pummel echo files http callgrind"}
    ROUNDS=${ROUNDS:-3}
    HTTP_SECONDS=${HTTP_SECONDS:-5}
    FILES_MB=${FILES_MB:-1024}; FILES_COUNT=100000
    PING_COUNT=50000; UDP_COUNT=100000; PUMMEL_COUNT=200000; TIMERS=1000000
    REARM_ROUNDS=500; ASYNC_TOTAL=100000; APUMMEL_COUNT=100000; ECHO_SECONDS=2
    ECHO_CONNS="1 100 1000"
fi
LIBXEV_COUNTS=${LIBXEV_COUNTS:-$([ "$QUICK" = 1 ] && echo matched || echo shipped)}
case "$LIBXEV_COUNTS" in shipped|matched) ;; *) echo "run.sh: --libxev-counts shipped|matched" >&2; exit 2 ;; esac
# Paths given relative to where run.sh was started.
[ -n "$LIBXEV" ] && LIBXEV=$(cd "$LIBXEV" 2>/dev/null && pwd || echo "$LIBXEV")
[ -n "$LIBUV" ] && LIBUV=$(cd "$LIBUV" 2>/dev/null && pwd || echo "$LIBUV")
export EVBENCH_SCRATCH="$SCRATCH"

wants() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---- build -------------------------------------------------------------------------
BIN="$SCRATCH/release"
CBIN="$SCRATCH/c"
# ev-echo-tcp and ev-echo-client are built into the same scratch directory (above), from
# the same library sources, in release mode.
MAIN_BIN="$BIN"
if [ "$BUILD" = 1 ]; then
    # What the library itself needs on a fresh machine (liburing-dev and pkg-config for
    # the io_uring backend and the C io_uring peers), as the test command installs it:
    # without it the first build fails on a missing liburing.h.
    bash "$ROOT/scripts/setup.sh" || { echo "run.sh: scripts/setup.sh could not install what the build needs" >&2; exit 1; }
    echo "== building (release)"
    # Other people may be editing the library while this builds ("input file was modified
    # during the build"): try again a few times before giving up.
    build() {
        local attempt
        for attempt in 1 2 3; do
            (cd "$HERE" && swift build -c release --scratch-path "$SCRATCH" "$@") && return 0
            echo "run.sh: build failed (attempt $attempt), retrying" >&2
            sleep 5
        done
        return 1
    }
    # The build plan is made again too: SwiftPM (6.3.1) keeps the list of a path
    # dependency's source files in it, and a file added to the main package since the last
    # build ("cannot find type ... in scope") would otherwise be left out.
    rm -f "$SCRATCH/release.yaml"
    # EvLoop's own modules are always rebuilt from scratch: SwiftPM's incremental build
    # (Swift 6.3.1) has been seen to keep a dependent module compiled against an older
    # layout of Completion or LoopCore (stored properties reached through @inlinable
    # accessors), which then crashes at run time. NIO's modules are kept.
    for m in EvLoop EvReadiness EvBackendEpoll EvBackendPoll EvBackendUring EvAsync Ev \
             EvExampleSupport CEvExampleSupport BenchSupport evbench niobench bench_report \
             ev_echo_tcp ev_echo_client EvHTTPSupport ev_http ev_http_async; do
        rm -rf "$SCRATCH/release/$m.build" "$SCRATCH/release/Modules/$m.swiftmodule"
    done
    build || { echo "run.sh: benchmark build failed" >&2; exit 1; }
    # The examples are products of the main package (a path dependency): name them, or
    # SwiftPM leaves an old build of them in place.
    if wants echo; then
        build --product ev-echo-tcp && build --product ev-echo-client ||
            { echo "run.sh: example build failed" >&2; exit 1; }
    fi
    if wants http; then
        build --product ev-http || { echo "run.sh: ev-http build failed" >&2; exit 1; }
        # The async variant, where the main package has it.
        if grep -q '"ev-http-async"' "$ROOT/Package.swift"; then
            build --product ev-http-async || { echo "run.sh: ev-http-async build failed" >&2; exit 1; }
        fi
    fi
    mkdir -p "$CBIN"
    if wants http; then http_build || { echo "run.sh: the http group's C servers did not build" >&2; exit 1; }; fi
    cc -O2 -Wall -Wextra -shared -fPIC -o "$CBIN/malloc_count.so" "$HERE/c/malloc_count.c" || exit 1
    cc -O2 -Wall -Wextra -o "$CBIN/pingpong" "$HERE/c/pingpong.c" -luring -lpthread -ldl || exit 1
    cc -O2 -Wall -Wextra -o "$CBIN/async_notify" "$HERE/c/async_notify.c" -lpthread -ldl || exit 1
    if [ "$WITH_UV" = 1 ] && wants ping-pongs; then
        # libuv's C peer builds on Debian's libuv1-dev (as scripts/setup.sh installs liburing).
        if ! dpkg -s libuv1-dev > /dev/null 2>&1 || ! command -v pkg-config > /dev/null; then
            echo "== installing libuv1-dev (the libuv ping-pong peer)"
            apt_install libuv1-dev pkg-config
        fi
        rm -f "$CBIN/uv_pingpong"
        # shellcheck disable=SC2046
        cc -O2 -Wall -Wextra -o "$CBIN/uv_pingpong" "$HERE/c/uv_pingpong.c" $(pkg-config --cflags --libs libuv) -lpthread -ldl ||
            echo "run.sh: the libuv peer did not build: left out" >&2
    fi
fi
SHIM="$CBIN/malloc_count.so"
[ -f "$SHIM" ] || { echo "run.sh: $SHIM missing (run without --skip-build)" >&2; exit 1; }
[ "$WITH_UV" = 1 ] && [ -x "$CBIN/uv_pingpong" ] || WITH_UV=0

# libxev's suite (always "built": Zig's cache makes it about a second when nothing changed,
# and the counts may differ from the last run's).
XEV_OK=0
if [ -n "$LIBXEV" ]; then
    if [ "$LIBXEV_COUNTS" = matched ]; then
        xev_counts=(--ping "$PING_COUNT" --udp "$UDP_COUNT" --pummel "$PUMMEL_COUNT" --async "$ASYNC_TOTAL" --apummel "$APUMMEL_COUNT")
    else
        xev_counts=()
    fi
    # The callgrind group measures libxev too, from a build valgrind can run (libxev.sh).
    wants callgrind && command -v valgrind > /dev/null && xev_counts+=(--callgrind)
    if LIBXEV_DIR="$LIBXEV" bash "$HERE/peers/libxev.sh" build "${xev_counts[@]}" --timers "$TIMERS"; then
        XEV_OK=1
    else
        echo "run.sh: libxev did not build: left out of this run" >&2
    fi
fi
UV_BENCH_OK=0
if [ -n "$LIBUV" ]; then
    if LIBUV_DIR="$LIBUV" bash "$HERE/peers/libuv.sh" build; then
        UV_BENCH_OK=1
    else
        echo "run.sh: libuv's benchmark runner did not build: left out of this run" >&2
    fi
fi

OUT="$HERE/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
RESULTS="$OUT/results.txt"
LOG="$OUT/log.txt"
: > "$RESULTS"
echo "== results in $OUT"
{
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), $(nproc) CPUs, quick=$QUICK rounds=$ROUNDS"
    echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# $(swift --version 2>&1 | head -1)"
    echo "# main at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    # The machine, for the report (no paths).
    # (guests often show a bare "AMD EPYC": family, model and stepping tell the generation)
    echo "# cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1) ($(awk -F': ' '/^cpu family/ && !f { f = $2 } /^model[[:space:]]*:/ && !m { m = $2 } /^stepping/ && !s { s = $2 } END { printf "family %s, model %s, stepping %s", f, m, s }' /proc/cpuinfo))"
    echo "# cpus: $(nproc)"
    echo "# kernel: $(uname -r)"
    if [ "$XEV_OK" = 1 ]; then
        # shellcheck disable=SC1091
        (. "$SCRATCH/libxev/counts.env"; echo "# peer: libxev $COMMIT (Zig 0.16.0 from PyPI ziglang, ReleaseFast), $LIBXEV_COUNTS counts: ping-pongs $((PING + 1)), ping-udp1 $((UDP + 1)) roundtrips, async $ASYNC pings per worker, million-timers $TIMERS")
    fi
    [ "$WITH_UV" = 1 ] && echo "# peer: libuv $(pkg-config --modversion libuv 2>/dev/null) (Debian libuv1-dev), c/uv_pingpong.c"
    [ "$UV_BENCH_OK" = 1 ] && echo "# peer: libuv-bench $(cat "$SCRATCH/libuv/version" 2>/dev/null) (its own benchmark runner, Release)"
} >> "$RESULTS"

# The file benchmark's floor: fio, from Debian's package (installed like libuv1-dev).
FIO_OK=0
if wants files; then
    if ! command -v fio > /dev/null 2>&1; then
        echo "== installing fio (the file benchmark's floor)"
        apt_install fio || true
    fi
    command -v fio > /dev/null 2>&1 && FIO_OK=1
    [ "$FIO_OK" = 1 ] && echo "# peer: $(fio --version) (Debian fio), --ioengine=io_uring --direct=1 --rw=randread --bs=4k" >> "$RESULTS"
    FILES_DIR=${FILES_DIR:-$SCRATCH/files}
    mkdir -p "$FILES_DIR"
    FILES_PATH="$FILES_DIR/randread-${FILES_MB}m.dat"
fi

# Which backends can run here (a forced backend never falls back).
AVAILABLE=""
for b in $BACKENDS; do
    if "$BIN/evbench" probe --backend "$b" > /dev/null 2>&1; then
        AVAILABLE="$AVAILABLE $b"
    else
        echo "== backend $b unavailable here: skipped" | tee -a "$LOG"
        echo "FAILED bench=probe impl=evloop/$b reason=unavailable" >> "$RESULTS"
    fi
done

# run ROUND PINNED BENCH IMPL COMMAND... : runs one benchmark process with the shim, keeps
# its RESULT lines (tagged with the round), and records a failure instead of stopping.
# With RENAME=1 in its environment, the RESULT lines carry IMPL instead of the name the
# program gives itself (a variant of a program run in another setting).
run() {
    local round=$1 pinned=$2 bench=$3 impl=$4
    shift 4
    local prefix=()
    [ "$pinned" = 1 ] && prefix=(taskset -c 0)
    local output rc
    output=$(LD_PRELOAD="$SHIM" timeout "${RUN_TIMEOUT:-300}" "${prefix[@]}" "$@" 2>>"$LOG")
    rc=$?
    printf '%s\n' "$output" >> "$LOG"
    if [ $rc -ne 0 ] || ! printf '%s\n' "$output" | grep -q '^RESULT '; then
        echo "   $bench [$impl]: FAILED (exit $rc; see log.txt)"
        echo "FAILED bench=$bench impl=$impl rc=$rc round=$round" >> "$RESULTS"
        return
    fi
    local rename=()
    [ "${RENAME:-0}" = 1 ] && rename=(-e "s| impl=[^ ]*| impl=$impl|")
    printf '%s\n' "$output" | grep '^RESULT ' | sed "${rename[@]}" -e "s/\$/ round=$round/" >> "$RESULTS"
    printf '%s\n' "$output" | grep -v '^RESULT ' | sed 's/^/   /'
}

# xev ROUND PINNED BENCH: libxev's BENCH on io_uring and on epoll (libxev's shipped counts
# run longer than EvLoop's, hence the longer timeout).
xev() {
    [ "$XEV_OK" = 1 ] || return 0
    local round=$1 pinned=$2 bench=$3 xb
    for xb in io_uring epoll; do
        RUN_TIMEOUT=900 run "$round" "$pinned" "$bench" "libxev/$xb" bash "$HERE/peers/libxev.sh" run "$bench" "$xb"
    done
}

# uvb ROUND PINNED BENCH: libuv's own runner (with --libuv).
uvb() {
    [ "$UV_BENCH_OK" = 1 ] || return 0
    run "$1" "$2" "$3" libuv-bench/epoll bash "$HERE/peers/libuv.sh" run "$3"
}

START=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round of $ROUNDS"
    if wants ping-pongs; then
        for mode in blocking epoll io_uring; do
            run "$round" 1 ping-pongs "c/$mode" "$CBIN/pingpong" --mode "$mode" --count "$PING_COUNT"
        done
        [ "$WITH_UV" = 1 ] && run "$round" 1 ping-pongs libuv/epoll "$CBIN/uv_pingpong" --count "$PING_COUNT"
        uvb "$round" 1 ping-pongs
        xev "$round" 1 ping-pongs
        run "$round" 1 ping-pongs swiftnio "$BIN/niobench" ping-pongs --count "$PING_COUNT"
        for b in $AVAILABLE; do
            run "$round" 1 ping-pongs "evloop/$b" "$BIN/evbench" ping-pongs --backend "$b" --count "$PING_COUNT"
            run "$round" 1 ping-pongs-async "evloop/$b" "$BIN/evbench" ping-pongs-async --backend "$b" --count "$PING_COUNT"
            run "$round" 1 ping-pongs-concrete "evloop/$b/concrete" "$BIN/evbench" ping-pongs-concrete --backend "$b" --count "$PING_COUNT"
        done
    fi
    if wants udp; then
        for b in $AVAILABLE; do
            run "$round" 1 ping-udp1 "evloop/$b" "$BIN/evbench" ping-udp1 --backend "$b" --count "$UDP_COUNT"
            run "$round" 1 udp_pummel_1v1 "evloop/$b" "$BIN/evbench" udp_pummel_1v1 --backend "$b" --count "$PUMMEL_COUNT"
        done
        xev "$round" 1 ping-udp1
        xev "$round" 1 udp_pummel_1v1
        uvb "$round" 1 ping-udp1
        uvb "$round" 1 udp_pummel_1v1
    fi
    if wants timers; then
        for b in $AVAILABLE; do
            run "$round" 0 million-timers "evloop/$b" "$BIN/evbench" million-timers --backend "$b" --count "$TIMERS"
            run "$round" 0 timer-rearm "evloop/$b" "$BIN/evbench" timer-rearm --backend "$b" --rounds "$REARM_ROUNDS"
        done
        run "$round" 0 million-timers swiftnio "$BIN/niobench" million-timers --count "$TIMERS"
        run "$round" 0 million-timers swiftnio/scheduleCallback "$BIN/niobench" million-timers --count "$TIMERS" --api callback
        xev "$round" 0 million-timers
    fi
    if wants async; then
        for n in 1 2 4 8; do
            for b in $AVAILABLE; do
                run "$round" 1 "async$n" "evloop/$b" "$BIN/evbench" "async$n" --backend "$b" --count $((ASYNC_TOTAL / n))
            done
            run "$round" 1 "async$n" c/epoll "$CBIN/async_notify" --threads "$n" --count $((ASYNC_TOTAL / n))
            if [ "$n" = 1 ]; then
                # The same without glibc's rseq area (glibc 2.35+ registers one per thread;
                # libxev's static Zig binaries have none): the kernel updates it on the
                # return to user space after every context switch, once per notification
                # here. Figures for the comparison only; the targets use the rows above.
                RENAME=1 run "$round" 1 async1 c/epoll/rseq-off env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$CBIN/async_notify" --threads 1 --count "$ASYNC_TOTAL"
                case " $AVAILABLE " in *" epoll "*)
                    RENAME=1 run "$round" 1 async1 evloop/epoll/rseq-off env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$BIN/evbench" async1 --backend epoll --count "$ASYNC_TOTAL" ;;
                esac
            fi
            xev "$round" 1 "async$n"
            [ "$n" = 1 ] && uvb "$round" 1 async1
        done
    fi
    if wants pummel; then
        for n in 1 2 4 8; do
            for b in $AVAILABLE; do
                # async_pummel_1 pinned, like libuv's anchor; with 2+ spinning notifiers
                # on one CPU the loop would get a sliver of it, so those run unpinned,
                # like libxev's.
                run "$round" "$([ "$n" = 1 ] && echo 1 || echo 0)" "async_pummel_$n" "evloop/$b" "$BIN/evbench" "async_pummel_$n" --backend "$b" --count "$APUMMEL_COUNT"
            done
            xev "$round" "$([ "$n" = 1 ] && echo 1 || echo 0)" "async_pummel_$n"
            [ "$n" = 1 ] && uvb "$round" 1 async_pummel_1
        done
    fi
done

# fio_run ROUND DEPTH: fio's 4 KiB O_DIRECT random reads of the same file with io_uring at
# queue depth DEPTH, for as many reads as EvLoop does, pinned like EvLoop. Its JSON gives
# IOPS and the CPU (usr + sys %) of the job, turned into CPU µs per read.
fio_run() {
    local round=$1 depth=$2 json
    [ "$FIO_OK" = 1 ] || return 0
    json=$(timeout 300 taskset -c 0 fio --name=randread --filename="$FILES_PATH" --ioengine=io_uring --direct=1 \
        --rw=randread --bs=4k --iodepth="$depth" --size="${FILES_MB}m" --number_ios="$FILES_COUNT" \
        --randrepeat=1 --norandommap --output-format=json 2>>"$LOG")
    local line
    line=$(printf '%s' "$json" | python3 -c '
import json, sys
job = json.load(sys.stdin)["jobs"][0]
r = job["read"]
ios = r["total_ios"]
seconds = r["runtime"] / 1000.0
cpu_us = (job["usr_cpu"] + job["sys_cpu"]) / 100.0 * seconds * 1e6
print("%.3f %d %.6f %.4f" % (r["iops"], ios, seconds, cpu_us / ios if ios else 0))
' 2>>"$LOG")
    if [ -z "$line" ]; then
        echo "   files-randread-qd$depth [fio/io_uring]: FAILED (see log.txt)"
        echo "FAILED bench=files-randread-qd$depth impl=fio/io_uring round=$round" >> "$RESULTS"
        return
    fi
    set -- $line
    echo "   files-randread-qd$depth [fio/io_uring]: $1 reads/s, CPU $4 µs/read"
    echo "RESULT bench=files-randread-qd$depth impl=fio/io_uring value=$1 unit=reads/s op=read ops=$2 seconds=$3 cpu_us_per_op=$4 allocs_per_op=na depth=$depth round=$round" >> "$RESULTS"
}
if wants files; then
    for round in $(seq 1 "$ROUNDS"); do
        echo "== files: 4 KiB O_DIRECT random reads of a ${FILES_MB} MiB file, round $round of $ROUNDS"
        for depth in 1 32; do
            for b in $AVAILABLE; do
                [ "$b" = poll ] && continue   # the same pool as epoll
                run "$round" 1 "files-randread-qd$depth" "evloop/$b" "$BIN/evbench" files-randread --backend "$b" \
                    --file "$FILES_PATH" --size-mb "$FILES_MB" --depth "$depth" --count "$FILES_COUNT" --warmup 1000
            done
            fio_run "$round" "$depth"
        done
    done
fi

# Echo throughput: ev-echo-client against ev-echo-tcp, unpinned (the server may use both
# CPUs with --threads 2), interleaved by backend, ROUNDS rounds.
echo_run() {
    local b=$1 threads=$2 conns=$3 round=$4
    local slog="$OUT/echo-server-$b-t$threads-c$conns-r$round.txt"
    "$MAIN_BIN/ev-echo-tcp" --backend "$b" --threads "$threads" --port 0 > "$slog" 2>&1 &
    local server=$! port
    port=$(server_port "$slog" 100)
    if [ -z "$port" ]; then
        echo "   echo $b t$threads c$conns: server did not start"
        echo "FAILED bench=echo-tcp-c$conns-t$threads impl=evloop/$b reason=server" >> "$RESULTS"
        kill "$server" 2>/dev/null; wait "$server" 2>/dev/null
        return
    fi
    local out
    out=$(timeout 60 "$MAIN_BIN/ev-echo-client" --backend "$b" --port "$port" --connections "$conns" --duration "$ECHO_SECONDS" 2>&1)
    local rc=$?
    kill -INT "$server" 2>/dev/null
    wait "$server" 2>/dev/null
    printf '%s\n' "$out" >> "$LOG"
    local line
    line=$(printf '%s\n' "$out" | sed -n 's/^roundtrips: \([0-9]*\) in \([0-9.]*\) s (\([0-9.]*\) roundtrips\/s)/\1 \2 \3/p')
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        echo "   echo $b t$threads c$conns: FAILED (exit $rc)"
        echo "FAILED bench=echo-tcp-c$conns-t$threads impl=evloop/$b rc=$rc" >> "$RESULTS"
        return
    fi
    set -- $line
    echo "   echo [$b] server threads $threads, $conns connections: $3 roundtrips/s"
    echo "RESULT bench=echo-tcp-c$conns-t$threads impl=evloop/$b value=$3 unit=roundtrips/s op=roundtrip ops=$1 seconds=$2 cpu_us_per_op=na allocs_per_op=na round=$round" >> "$RESULTS"
}
if wants echo; then
    for round in $(seq 1 "$ROUNDS"); do
        echo "== echo throughput, round $round of $ROUNDS"
        for threads in 1 2; do
            for conns in $ECHO_CONNS; do
                for b in $AVAILABLE; do
                    echo_run "$b" "$threads" "$conns" "$round"
                done
            done
        done
    done
fi

if wants http; then
    http_group "$ROUNDS"
fi

# Instructions per operation (user space, every thread), from callgrind: the difference of
# two runs of different lengths, so start-up and teardown cancel out. Repeatable to a few
# instructions, whatever the machine's load, which is why the benchmarks whose wall and CPU
# times this machine scatters most (ping-pongs, async1, ping-udp1) are counted here too.
# Valgrind 3.19 hangs on an io_uring program whose other thread waits in io_uring_enter (the
# TCP ping-pong, async1), so io_uring is counted only in the one-thread ping-udp1; it cannot
# read the DWARF 5 of Swift binaries, so those run from copies without debug info.
# callgrind_per_op BENCH IMPL OPS_PER_COUNT COMMAND...: COMMAND takes --count N and
# performs N x OPS_PER_COUNT operations (async1: two notifications per ping).
callgrind_per_op() {
    local bench=$1 impl=$2 per_count=$3
    shift 3
    local a b
    a=$(timeout 300 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" --count 2000 --warmup 10 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    b=$(timeout 300 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" --count 7000 --warmup 10 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    callgrind_result "$bench" "$impl" "$a" "$b" $((5000 * per_count))
}
# callgrind_whole BENCH IMPL OPS COMMAND...: one run of a program whose length is compiled
# in (libxev's), divided by its OPS operations.
callgrind_whole() {
    local bench=$1 impl=$2 ops=$3
    shift 3
    local b
    b=$(timeout 600 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    callgrind_result "$bench" "$impl" 0 "$b" "$ops"
}
callgrind_result() {
    local bench=$1 impl=$2 a=$3 b=$4 ops=$5
    local op=roundtrip
    [ "$bench" = instructions-async1 ] && op=notification
    if [ -z "$a" ] || [ -z "$b" ]; then
        echo "   callgrind $bench [$impl]: FAILED"
        echo "FAILED bench=$bench impl=$impl" >> "$RESULTS"
        return
    fi
    local per=$(( (b - a) / ops ))
    echo "   callgrind $bench [$impl]: $per instructions/$op (user space)"
    echo "RESULT bench=$bench impl=$impl value=$per unit=instructions/$op op=$op ops=$ops seconds=na cpu_us_per_op=na allocs_per_op=na round=1" >> "$RESULTS"
}
# callgrind_libxev BENCH BACKEND: libxev's callgrind build of BENCH (libxev.sh build --callgrind).
callgrind_libxev() {
    local bench=$1 backend=$2 target
    local name=instructions-$bench
    [ "$bench" = ping-pongs ] && name=instructions
    if ! target=$(bash "$HERE/peers/libxev.sh" callgrind-target "$bench" "$backend"); then
        echo "FAILED bench=$name impl=libxev/$backend" >> "$RESULTS"
        return
    fi
    # shellcheck disable=SC2086
    callgrind_whole "$name" "libxev/$backend" ${target#* } ${target%% *}
}
if wants callgrind; then
    if command -v valgrind > /dev/null; then
        echo "== callgrind: instructions per ping-pong roundtrip, async1 notification, ping-udp1 roundtrip"
        CG="$SCRATCH/callgrind"
        mkdir -p "$CG"
        objcopy --strip-debug "$BIN/evbench" "$CG/evbench"
        objcopy --strip-debug "$BIN/niobench" "$CG/niobench"
        callgrind_per_op instructions c/blocking 1 "$CBIN/pingpong" --mode blocking
        callgrind_per_op instructions c/epoll 1 "$CBIN/pingpong" --mode epoll
        callgrind_per_op instructions swiftnio 1 "$CG/niobench" ping-pongs
        callgrind_per_op instructions-async1 c/epoll 2 "$CBIN/async_notify"
        for b in $AVAILABLE; do
            callgrind_per_op instructions-ping-udp1 "evloop/$b" 1 "$CG/evbench" ping-udp1 --backend "$b"
            [ "$b" = io_uring ] && continue
            callgrind_per_op instructions "evloop/$b" 1 "$CG/evbench" ping-pongs --backend "$b"
            callgrind_per_op instructions "evloop/$b/async" 1 "$CG/evbench" ping-pongs-async --backend "$b"
            callgrind_per_op instructions-async1 "evloop/$b" 2 "$CG/evbench" async1 --backend "$b"
        done
        if [ "$XEV_OK" = 1 ]; then
            callgrind_libxev ping-pongs epoll
            callgrind_libxev async1 epoll
            callgrind_libxev ping-udp1 epoll
            callgrind_libxev ping-udp1 io_uring
        fi
    else
        echo "== callgrind: valgrind not installed, skipped"
    fi
fi

echo "== done in $(( $(date +%s) - START )) s; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS"
"$BIN/bench-report" "$RESULTS" > "$OUT/report.md"
echo
cat "$OUT/report.md"
echo
echo "Report: $OUT/report.md (RESULT lines: $RESULTS, program output: $LOG)"
