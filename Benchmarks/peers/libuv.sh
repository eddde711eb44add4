#!/usr/bin/env bash
# Benchmarks/peers/libuv.sh: libuv's own benchmark runner, built from a checkout of
# libuv/libuv and run as a peer in the same run as EvLoop's (run.sh --libuv PATH calls it).
# The must-have libuv peer is c/uv_pingpong.c on Debian's libuv1-dev; this one adds libuv's
# own benchmarks as libuv ships them.
#
#   libuv.sh build
#   libuv.sh run BENCH       BENCH: ping-pongs ping-udp1 udp_pummel_1v1 async1 async2 async4
#                            async8 async_pummel_1 async_pummel_2 async_pummel_4 async_pummel_8
#
# Environment: LIBUV_DIR (the checkout; never modified: cmake builds out of tree),
# EVBENCH_SCRATCH (the benchmark scratch directory, default Benchmarks/.build-bench).
#
# build: cmake (from apt if missing) -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON
# -DLIBUV_BUILD_TESTS=ON -DLIBUV_BUILD_BENCH=ON, target uv_run_benchmarks_a, in
# <scratch>/libuv/build.
#
# run: `uv_run_benchmarks_a NAME` under `/usr/bin/time -f` (user + sys of the runner and of
# the processes it waits for: the benchmark process and, for ping_pongs, its
# tcp4_echo_server helper), and one RESULT line, impl=libuv-bench/epoll. What each figure
# counts (libuv's test/benchmark-*.c):
#   ping-pongs      ping_pongs: one TCP connection to the runner's tcp4_echo_server helper
#                   (another process), 5 s; value: roundtrips/s (pongs / 5, an integer);
#                   CPU per roundtrip = CPU of all the processes / (value x 5). libuv's
#                   client mallocs a write request per ping and its echo server a buffer
#                   per read: c/uv_pingpong.c is the allocation-free libuv peer.
#   ping-udp1       ping_udp1: 5 s; roundtrips/s.
#   udp_pummel_1v1  1,000,000 sends (five-part 45-byte datagrams); received/s; CPU per
#                   datagram sent.
#   asyncN          1,000,000 pings per worker; value NUM_PINGS / seconds: the main loop's
#                   callbacks per second per worker, as libxev's and EvLoop's; CPU per
#                   notification = CPU / (2 x N x 1,000,000).
#   async_pummel_N  1,000,000 callbacks; callbacks/s; CPU per callback.
set -uo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=${EVBENCH_SCRATCH:-$HERE/.build-bench}
UV=$SCRATCH/libuv
TIME=/usr/bin/time

PROGRAM=libuv.sh
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

build() {
    [ -n "${LIBUV_DIR:-}" ] || die "LIBUV_DIR is not set (a checkout of libuv/libuv)"
    [ -f "$LIBUV_DIR/CMakeLists.txt" ] && [ -f "$LIBUV_DIR/test/benchmark-ping-pongs.c" ] || die "$LIBUV_DIR is not a libuv checkout"
    command -v cmake > /dev/null || apt_install cmake || die "cannot install cmake"
    [ -x "$TIME" ] || apt_install time || die "cannot install GNU time"
    local version
    version=$(git -C "$LIBUV_DIR" describe --tags 2>/dev/null ||
        sed -n 's/^#define UV_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' "$LIBUV_DIR/include/uv/version.h" | paste -sd . -)
    echo "== libuv: building $version (Release, uv_run_benchmarks_a)" >&2
    mkdir -p "$UV"
    # A build directory configured from another checkout makes cmake refuse ("does not
    # match the source ... used to generate cache"): start it afresh.
    local src
    src=$(cd "$LIBUV_DIR" && pwd -P)
    if [ -f "$UV/build/CMakeCache.txt" ] && ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$src" "$UV/build/CMakeCache.txt"; then
        rm -rf "$UV/build"
    fi
    cmake -S "$LIBUV_DIR" -B "$UV/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON \
        -DLIBUV_BUILD_TESTS=ON -DLIBUV_BUILD_BENCH=ON > "$UV/cmake.log" 2>&1 || { cat "$UV/cmake.log" >&2; die "cmake failed"; }
    cmake --build "$UV/build" --target uv_run_benchmarks_a -j "$(nproc)" > "$UV/build.log" 2>&1 ||
        { tail -30 "$UV/build.log" >&2; die "build failed"; }
    echo "$version" > "$UV/version"
}

run() {
    local bench=$1
    local bin=$UV/build/uv_run_benchmarks_a
    [ -x "$bin" ] || die "not built (libuv.sh build)"
    local name
    case "$bench" in
        ping-pongs) name=ping_pongs ;;
        ping-udp1) name=ping_udp1 ;;
        udp_pummel_1v1|async[1248]|async_pummel_[1248]) name=$bench ;;
        *) die "unknown benchmark $bench" ;;
    esac
    local tf of
    tf=$(mktemp) of=$(mktemp)
    # The runner runs the benchmark in child processes, from its build directory.
    (cd "$UV/build" && "$TIME" -f '%e %U %S %M' -o "$tf" "$bin" "$name") > "$of" 2>&1
    local rc=$?
    # The runner prints TAP ("ok 1 - NAME", then the benchmark's lines after "# "); libuv
    # prints counts with thousands separators (1,000,000).
    local out
    out=$(sed -n 's/^# //p' "$of" | grep -E "^(ping_pongs|udp_pummel|async)" | sed -e 's/\([0-9]\),\([0-9]\)/\1\2/g' -e 's/\([0-9]\),\([0-9]\)/\1\2/g')
    grep -q "^ok 1 - $name" "$of" || rc=${rc/#0/1}
    printf 'libuv %s: %s\n' "$name" "$(printf '%s' "$out" | paste -sd ';' -)"
    if [ $rc -ne 0 ] || [ -z "$out" ]; then
        sed 's/^/   libuv: /' "$of" >&2
        rm -f "$tf" "$of"
        die "$name exited with $rc"
    fi
    local wall user sys rss
    read -r wall user sys rss < <(tail -1 "$tf")
    rm -f "$tf" "$of"
    local cpu_us
    cpu_us=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", (u + s) * 1e6 }')
    per() { awk -v c="$cpu_us" -v n="$1" 'BEGIN { printf "%.4f", c / n }'; }
    local common="allocs_per_op=na process_cpu_s=$(awk -v c="$cpu_us" 'BEGIN { printf "%.3f", c / 1e6 }') process_wall_s=$wall peak_rss_mb=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }') libuv=$(cat "$UV/version" 2>/dev/null)"
    local impl=libuv-bench/epoll value ops seconds line
    case "$bench" in
        ping-pongs)
            value=$(printf '%s\n' "$out" | sed -n 's/^ping_pongs: \([0-9]*\) roundtrips\/s$/\1/p')
            [ -n "$value" ] || die "no figure in the output"
            ops=$((value * 5)); seconds=5
            echo "RESULT bench=$bench impl=$impl value=$value unit=roundtrips/s op=roundtrip ops=$ops seconds=$seconds cpu_us_per_op=$(per $ops) $common"
            ;;
        ping-udp1)
            value=$(printf '%s\n' "$out" | sed -n 's/^ping_pongs: [0-9]* pingers, ~ *\([0-9]*\) roundtrips\/s$/\1/p')
            [ -n "$value" ] || die "no figure in the output"
            ops=$((value * 5)); seconds=5
            echo "RESULT bench=$bench impl=$impl value=$value unit=roundtrips/s op=roundtrip ops=$ops seconds=$seconds cpu_us_per_op=$(per $ops) $common"
            ;;
        udp_pummel_1v1)
            line=$(printf '%s\n' "$out" | sed -n 's/^udp_pummel_1v1: \([0-9.]*\)\/s received, \([0-9.]*\)\/s sent\. \([0-9]*\) received, \([0-9]*\) sent in \([0-9.]*\) seconds\.$/\1 \2 \3 \4 \5/p')
            [ -n "$line" ] || die "no figure in the output"
            local rr sr received sent
            read -r rr sr received sent seconds <<< "$line"
            [ "$sent" -gt 0 ] || die "nothing sent"
            echo "RESULT bench=$bench impl=$impl value=$rr unit=datagrams/s op=datagram ops=$sent seconds=$seconds cpu_us_per_op=$(per "$sent") sent_per_s=$sr received=$received sent=$sent $common"
            ;;
        async[1248])
            local n=${bench#async}
            line=$(printf '%s\n' "$out" | sed -n "s/^$bench: \([0-9.]*\) sec (\([0-9.]*\)\/sec)$/\1 \2/p")
            [ -n "$line" ] || die "no figure in the output"
            read -r seconds value <<< "$line"
            ops=$((2 * n * 1000000))
            echo "RESULT bench=$bench impl=$impl value=$value unit=notifications/s op=notification ops=$ops seconds=$seconds cpu_us_per_op=$(per $ops) threads=$n per_worker=1000000 seconds_total=$seconds $common"
            ;;
        async_pummel_[1248])
            local n=${bench#async_pummel_}
            line=$(printf '%s\n' "$out" | sed -n "s/^$bench: \([0-9]*\) callbacks in \([0-9.]*\) seconds (\([0-9.]*\)\/sec)$/\1 \2 \3/p")
            [ -n "$line" ] || die "no figure in the output"
            read -r ops seconds value <<< "$line"
            echo "RESULT bench=$bench impl=$impl value=$value unit=callbacks/s op=callback ops=$ops seconds=$seconds cpu_us_per_op=$(per "$ops") threads=$n seconds_total=$seconds $common"
            ;;
    esac
}

case "${1:-}" in
    build) shift; build ;;
    run) shift; [ $# -eq 1 ] || die "usage: libuv.sh run BENCH"; run "$1" ;;
    *) sed -n '2,11p' "$0"; exit 2 ;;
esac
