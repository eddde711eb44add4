#!/usr/bin/env bash
# Benchmarks/peers/libxev.sh: libxev's own benchmark suite, built from a checkout of
# mitchellh/libxev and run as a peer in the same run as EvLoop's (run.sh --libxev PATH
# calls it; it can also be used by hand).
#
#   libxev.sh build [--ping N] [--udp N] [--pummel N] [--async N] [--apummel N] [--timers N] [--callgrind]
#   libxev.sh run BENCH BACKEND     BACKEND: io_uring | epoll
#   libxev.sh callgrind-target BENCH BACKEND   prints "BINARY OPERATIONS" for run.sh's callgrind group
#
# Environment: LIBXEV_DIR (the checkout; never modified), EVBENCH_SCRATCH (the benchmark
# scratch directory, default Benchmarks/.build-bench).
#
# build:
#   1. Zig 0.16.0 from PyPI (`ziglang==0.16.0`) in a venv under the scratch directory, run
#      as `python -m ziglang` (installed once; python3-venv comes from apt if missing);
#   2. a scratch copy of the checkout (without .git, zig-out, .zig-cache), in which
#      src/bench/ gets, next to each benchmark, an epoll variant BENCH-epoll.zig: the same
#      file with `const xev = @import("xev");` reading `@import("xev").Epoll` and
#      `xev.ThreadPool` reading the root module's `@import("xev").ThreadPool` (the
#      backend-specific API has no ThreadPool); async2/4/8 and async_pummel_2/4/8 import
#      the epoll variant of async1 / async_pummel_1. The unmodified files use libxev's
#      default backend, io_uring on Linux;
#   3. the counts: million-timers' NUM_TIMERS is set to --timers (libxev ships 10 M; the
#      suite runs 1 M, with deadlines 2 ms ... NUM_TIMERS/1000 + 1 ms, 1,000 timers per ms,
#      as EvLoop's bench); the other counts stay libxev's unless given: --ping (roundtrips
#      of ping-pongs, libxev 500,000), --udp (ping-udp1, 500,000), --pummel (datagrams of
#      udp_pummel_1v1, 1,000,000), --async (NUM_PINGS of async1..8, per worker, 1,000,000),
#      --apummel (callbacks of async_pummel_1..8, 1,000,000);
#   4. `zig build -Demit-bench -Doptimize=ReleaseFast` in the copy, with Zig's caches and the
#      install prefix under the scratch directory (libxev builds its benchmarks ReleaseFast
#      whatever -Doptimize says; the option covers the library and its tests, which the
#      install step builds too).
#   5. with --callgrind (x86_64 only), the same copy once more with -Dcpu=x86_64_v3 (AVX2;
#      x86_64_v2 on a CPU without AVX2) into out-callgrind/, the target written to
#      out-callgrind/cpu-target: the native build uses AVX-512 (EVEX) instructions, which
#      valgrind 3.19 cannot decode ("vex amd64->IR: unhandled instruction bytes: 0x62 ..."),
#      so callgrind stops at the first one. Its instruction counts differ from the native
#      build's where code vectorizes: mostly memcpy, whose vector width follows the CPU
#      target (with v2 38 % of the ping-pong's instructions, 2,110 per roundtrip against
#      1,669 with v3; ping-udp1 and async1 moved by under 2 %), so read libxev's figures as
#      an upper bound. The first such build takes several minutes (the library's tests are
#      built too); later ones come from Zig's cache.
#
# run: runs one benchmark binary under `/usr/bin/time -f` (whole-process user + sys CPU,
# peak RSS; GNU time prints CPU to 10 ms), prints libxev's own lines and one RESULT line in
# bench-report's format, impl=libxev/BACKEND. run.sh pins it (taskset) like EvLoop's
# counterpart. What each figure counts (libxev's definitions, read from src/bench/*.zig):
#   ping-pongs      value: roundtrips/s, client pongs / seconds from connect to the server's
#                   exit (libxev stops after pongs > N, so N + 1 roundtrips); CPU per
#                   roundtrip = process CPU / (N + 1), both ends.
#   ping-udp1       value: roundtrips/s, N + 1 roundtrips; CPU per roundtrip likewise.
#   udp_pummel_1v1  value: datagrams received/s; sent_per_s; CPU per datagram sent.
#   asyncN          value: NUM_PINGS / seconds, i.e. the main loop's callbacks per second
#                   *per worker* (each callback answers one worker; a worker's roundtrip is
#                   two notifications); CPU per notification = process CPU /
#                   (2 x N x NUM_PINGS). EvLoop's asyncN counts exactly the same.
#   async_pummel_N  value: main-loop callbacks/s (notifications coalesce); CPU per callback,
#                   the notifying threads' CPU included.
#   million-timers  value: seconds total (arming + running); init_s, dispatch_s; cpu_s and
#                   process_cpu_s: the whole process (allocating the completions too);
#                   peak_rss_mb.
# libxev's binaries are static Zig programs without libc: the malloc-counting shim cannot
# see their allocations (allocs_per_op=na).
set -uo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=${EVBENCH_SCRATCH:-$HERE/.build-bench}
# Physical paths (symbolic links resolved), so that Zig's cache finds its entries again
# whichever way the scratch directory was reached.
mkdir -p "$SCRATCH/libxev" || exit 1
XEV=$(cd "$SCRATCH/libxev" && pwd -P)
VENV=$(cd "$SCRATCH" && pwd -P)/zig-venv
ZIG_VERSION=0.16.0
TIME=/usr/bin/time

PROGRAM=libxev.sh
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

ensure_zig() {
    if [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -m ziglang version 2>/dev/null)" = "$ZIG_VERSION" ]; then
        return 0
    fi
    echo "== libxev: installing Zig $ZIG_VERSION (PyPI ziglang) into the scratch venv" >&2
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" > /dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv || die "cannot install python3-venv"
        python3 -m venv "$VENV" || die "cannot make a venv"
    fi
    "$VENV/bin/pip" install -q "ziglang==$ZIG_VERSION" >&2 || die "pip install ziglang==$ZIG_VERSION failed"
    [ "$("$VENV/bin/python" -m ziglang version 2>/dev/null)" = "$ZIG_VERSION" ] || die "Zig $ZIG_VERSION does not run"
}

# patch FILE SED-EXPRESSION EXPECTED-FIXED-STRING: edits FILE in place and checks that the
# result contains the expected text (so a libxev whose sources moved fails loudly instead of
# silently measuring something else).
patch() {
    local file=$1 expr=$2 expect=$3
    sed -i -e "$expr" "$file"
    grep -qF -- "$expect" "$file" || die "$(basename "$file"): could not patch ($expect); is this libxev a82a04e or close to it?"
}

build() {
    local ping="" udp="" pummel="" async="" apummel="" timers=1000000 callgrind=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --ping) ping=$2; shift ;;
            --udp) udp=$2; shift ;;
            --pummel) pummel=$2; shift ;;
            --async) async=$2; shift ;;
            --apummel) apummel=$2; shift ;;
            --timers) timers=$2; shift ;;
            --callgrind) callgrind=1 ;;
            *) die "build: unknown option $1" ;;
        esac
        shift
    done
    [ -n "${LIBXEV_DIR:-}" ] || die "LIBXEV_DIR is not set (a checkout of mitchellh/libxev)"
    [ -f "$LIBXEV_DIR/build.zig" ] && [ -d "$LIBXEV_DIR/src/bench" ] || die "$LIBXEV_DIR is not a libxev checkout"
    ensure_zig
    [ -x "$TIME" ] || apt_install time || die "cannot install GNU time"

    local commit
    commit=$(git -C "$LIBXEV_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$LIBXEV_DIR" diff --quiet HEAD 2>/dev/null || { [ "$commit" != unknown ] && commit="$commit (modified)"; }
    echo "== libxev: building $commit (Zig $ZIG_VERSION, ReleaseFast, epoll variants)" >&2

    local src=$XEV/src
    rm -rf "$src"
    mkdir -p "$src" "$XEV/cache" "$XEV/global-cache"
    (cd "$LIBXEV_DIR" && tar -cf - --exclude=./.git --exclude=./zig-out --exclude=./.zig-cache .) |
        tar -xf - -C "$src" || die "cannot copy the checkout"
    local b=$src/src/bench

    # Counts (in the io_uring files; the epoll variants are copied from them below).
    patch "$b/million-timers.zig" "s/^pub const NUM_TIMERS: usize = .*;/pub const NUM_TIMERS: usize = $timers;/" \
        "pub const NUM_TIMERS: usize = $timers;"
    [ -n "$ping" ] && patch "$b/ping-pongs.zig" "s/if (self.pongs > [0-9_]*)/if (self.pongs > $ping)/" "if (self.pongs > $ping)"
    [ -n "$udp" ] && patch "$b/ping-udp1.zig" "s/if (self.pongs > [0-9_]*)/if (self.pongs > $udp)/" "if (self.pongs > $udp)"
    [ -n "$pummel" ] && patch "$b/udp_pummel_1v1.zig" "s/^var packet_counter: usize = .*;/var packet_counter: usize = $pummel;/" \
        "var packet_counter: usize = $pummel;"
    [ -n "$async" ] && patch "$b/async1.zig" "s/^pub const NUM_PINGS = .*;/pub const NUM_PINGS = $async;/" "pub const NUM_PINGS = $async;"
    [ -n "$apummel" ] && patch "$b/async_pummel_1.zig" "s/^pub const NUM_PINGS = .*;/pub const NUM_PINGS = $apummel;/" \
        "pub const NUM_PINGS = $apummel;"
    # What the binaries count, for `run` (libxev's defaults where not patched).
    {
        echo "PING=$(sed -n 's/.*if (self.pongs > \([0-9_]*\)).*/\1/p' "$b/ping-pongs.zig" | head -1 | tr -d _)"
        echo "UDP=$(sed -n 's/.*if (self.pongs > \([0-9_]*\)).*/\1/p' "$b/ping-udp1.zig" | head -1 | tr -d _)"
        echo "ASYNC=$(( $(sed -n 's/^pub const NUM_PINGS = \(.*\);/\1/p' "$b/async1.zig") ))"
        echo "TIMERS=$timers"
        echo "COMMIT='$commit'"
    } > "$XEV/counts.env.new"

    # The epoll variants.
    local f
    for f in ping-pongs ping-udp1 udp_pummel_1v1 async1 async_pummel_1 million-timers; do
        cp "$b/$f.zig" "$b/$f-epoll.zig"
        patch "$b/$f-epoll.zig" 's/xev\.ThreadPool/@import("xev").ThreadPool/g; s/^const xev = @import("xev");/const xev = @import("xev").Epoll;/' \
            'const xev = @import("xev").Epoll;'
    done
    for f in async2 async4 async8; do
        cp "$b/$f.zig" "$b/$f-epoll.zig"
        patch "$b/$f-epoll.zig" 's/@import("async1.zig")/@import("async1-epoll.zig")/' '@import("async1-epoll.zig")'
    done
    for f in async_pummel_2 async_pummel_4 async_pummel_8; do
        cp "$b/$f.zig" "$b/$f-epoll.zig"
        patch "$b/$f-epoll.zig" 's/@import("async_pummel_1.zig")/@import("async_pummel_1-epoll.zig")/' '@import("async_pummel_1-epoll.zig")'
    done

    (cd "$src" && "$VENV/bin/python" -m ziglang build -Demit-bench -Doptimize=ReleaseFast \
        --prefix "$XEV/out" --cache-dir "$XEV/cache" --global-cache-dir "$XEV/global-cache") >&2 ||
        die "zig build failed"
    rm -rf "$XEV/out-callgrind"
    if [ "$callgrind" = 1 ] && [ "$(uname -m)" = x86_64 ]; then
        # The widest target valgrind 3.19 decodes: x86_64_v3 (AVX2) where the CPU has it,
        # else x86_64_v2. v2 made memcpy 38 % of the ping-pong's count (2,110 instructions
        # per roundtrip against 1,669 with v3, 7 December 2026).
        local target=x86_64_v2
        grep -qw avx2 /proc/cpuinfo 2>/dev/null && target=x86_64_v3
        echo "== libxev: the same benchmarks for callgrind (-Dcpu=$target: no AVX-512)" >&2
        (cd "$src" && "$VENV/bin/python" -m ziglang build -Demit-bench -Doptimize=ReleaseFast -Dcpu=$target \
            --prefix "$XEV/out-callgrind" --cache-dir "$XEV/cache" --global-cache-dir "$XEV/global-cache") >&2 ||
            die "zig build ($target, for callgrind) failed"
        echo "$target" > "$XEV/out-callgrind/cpu-target"
    fi
    mv "$XEV/counts.env.new" "$XEV/counts.env"
    echo "== libxev: benchmarks in $XEV/out/bin/bench" >&2
}

# callgrind-target BENCH BACKEND: the callgrind build's binary of BENCH and how many
# operations it runs (ping-pongs and ping-udp1: roundtrips; async1: notifications, both
# sides), for run.sh, which runs it under valgrind once and divides (libxev's counts are
# compiled in, so the difference of two lengths that EvLoop's figures use is not available;
# the start-up and teardown included this way are under 1 % of the totals).
callgrind_target() {
    local bench=$1 backend=$2
    [ -f "$XEV/counts.env" ] || die "not built (libxev.sh build)"
    # shellcheck disable=SC1091
    . "$XEV/counts.env"
    local bin=$XEV/out-callgrind/bin/bench/$bench
    [ "$backend" = epoll ] && bin=$bin-epoll
    [ -x "$bin" ] || die "$bin missing (libxev.sh build --callgrind)"
    case "$bench" in
        ping-pongs) echo "$bin $((PING + 1))" ;;
        ping-udp1) echo "$bin $((UDP + 1))" ;;
        async1) echo "$bin $((2 * ASYNC))" ;;
        *) die "callgrind-target: $bench is not measured under callgrind" ;;
    esac
}

# field NAME TEXT: the number before NAME in libxev's line, e.g. field 'roundtrips/s'.
run() {
    local bench=$1 backend=$2
    [ -f "$XEV/counts.env" ] || die "not built (libxev.sh build)"
    # shellcheck disable=SC1091
    . "$XEV/counts.env"
    local bin=$XEV/out/bin/bench/$bench
    case "$backend" in
        io_uring) ;;
        epoll) bin=$bin-epoll ;;
        *) die "unknown backend $backend (io_uring or epoll)" ;;
    esac
    [ -x "$bin" ] || die "$bin missing"
    local tf ef
    tf=$(mktemp) ef=$(mktemp)
    "$TIME" -f '%e %U %S %M' -o "$tf" "$bin" 2> "$ef" > /dev/null
    local rc=$?
    # libxev logs with std.log: "info: ..." lines on standard error.
    local out
    out=$(sed -n 's/^info: //p' "$ef")
    printf 'libxev %s [%s]: %s\n' "$bench" "$backend" "$(printf '%s' "$out" | paste -sd ';' - | sed 's/;/; /g')"
    if [ $rc -ne 0 ]; then
        sed 's/^/   libxev: /' "$ef" >&2
        rm -f "$tf" "$ef"
        die "$bench ($backend) exited with $rc"
    fi
    local wall user sys rss
    read -r wall user sys rss < <(tail -1 "$tf")
    rm -f "$tf" "$ef"
    local cpu_us rss_mb
    cpu_us=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", (u + s) * 1e6 }')
    rss_mb=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
    per() { awk -v c="$cpu_us" -v n="$1" 'BEGIN { printf "%.4f", c / n }'; }
    local common="allocs_per_op=na process_cpu_s=$(awk -v c="$cpu_us" 'BEGIN { printf "%.3f", c / 1e6 }') process_wall_s=$wall peak_rss_mb=$rss_mb libxev=${COMMIT// /_}"
    local impl=libxev/$backend value ops seconds
    case "$bench" in
        ping-pongs)
            value=$(printf '%s\n' "$out" | sed -n 's/^\([0-9.]*\) roundtrips\/s$/\1/p')
            seconds=$(printf '%s\n' "$out" | sed -n 's/^\([0-9.]*\) seconds total$/\1/p')
            ops=$((PING + 1))
            [ -n "$value" ] || die "no figure in the output"
            echo "RESULT bench=$bench impl=$impl value=$value unit=roundtrips/s op=roundtrip ops=$ops seconds=$seconds cpu_us_per_op=$(per $ops) $common"
            ;;
        ping-udp1)
            value=$(printf '%s\n' "$out" | sed -n 's/^ping_pongs: [0-9]* pingers, ~\([0-9.]*\) roundtrips\/s$/\1/p')
            ops=$((UDP + 1))
            [ -n "$value" ] || die "no figure in the output"
            seconds=$(awk -v n="$ops" -v r="$value" 'BEGIN { printf "%.6f", n / r }')
            echo "RESULT bench=$bench impl=$impl value=$value unit=roundtrips/s op=roundtrip ops=$ops seconds=$seconds cpu_us_per_op=$(per $ops) $common"
            ;;
        udp_pummel_1v1)
            local line
            line=$(printf '%s\n' "$out" | sed -n 's/^udp_pummel_1v1: \([0-9.]*\)f\/s received, \([0-9.]*\)f\/s sent, \([0-9]*\) received, \([0-9]*\) sent in \([0-9.]*\) seconds$/\1 \2 \3 \4 \5/p')
            [ -n "$line" ] || die "no figure in the output"
            local recv_rate sent_rate received sent
            read -r recv_rate sent_rate received sent seconds <<< "$line"
            [ "$sent" -gt 0 ] || die "nothing sent"
            echo "RESULT bench=$bench impl=$impl value=$recv_rate unit=datagrams/s op=datagram ops=$sent seconds=$seconds cpu_us_per_op=$(per "$sent") sent_per_s=$sent_rate received=$received sent=$sent $common"
            ;;
        async1|async2|async4|async8)
            local n=${bench#async}
            local line
            line=$(printf '%s\n' "$out" | sed -n "s/^$bench: \([0-9.]*\) seconds (\([0-9.]*\)\/sec)$/\1 \2/p")
            [ -n "$line" ] || die "no figure in the output"
            read -r seconds value <<< "$line"
            ops=$((2 * n * ASYNC))
            echo "RESULT bench=$bench impl=$impl value=$value unit=notifications/s op=notification ops=$ops seconds=$seconds cpu_us_per_op=$(per $ops) threads=$n per_worker=$ASYNC seconds_total=$seconds $common"
            ;;
        async_pummel_1|async_pummel_2|async_pummel_4|async_pummel_8)
            local n=${bench#async_pummel_}
            local line
            line=$(printf '%s\n' "$out" | sed -n "s/^$bench: \([0-9]*\) callbacks in \([0-9.]*\) seconds (\([0-9.]*\)\/sec)$/\1 \2 \3/p")
            [ -n "$line" ] || die "no figure in the output"
            read -r ops seconds value <<< "$line"
            echo "RESULT bench=$bench impl=$impl value=$value unit=callbacks/s op=callback ops=$ops seconds=$seconds cpu_us_per_op=$(per "$ops") threads=$n seconds_total=$seconds $common"
            ;;
        million-timers)
            local total init dispatch
            total=$(printf '%s\n' "$out" | sed -n 's/^\([0-9.]*\) seconds total$/\1/p')
            init=$(printf '%s\n' "$out" | sed -n 's/^\([0-9.]*\) seconds init$/\1/p')
            dispatch=$(printf '%s\n' "$out" | sed -n 's/^\([0-9.]*\) seconds dispatch$/\1/p')
            [ -n "$total" ] || die "no figure in the output"
            local last excess cpu_s
            last=$(awk -v n="$TIMERS" 'BEGIN { printf "%.3f", (int((n + 999) / 1000) + 1) / 1000 }')
            excess=$(awk -v t="$total" -v l="$last" 'BEGIN { printf "%.3f", t - l }')
            cpu_s=$(awk -v c="$cpu_us" 'BEGIN { printf "%.3f", c / 1e6 }')
            echo "RESULT bench=$bench impl=$impl value=$total unit=s op=timer ops=$TIMERS seconds=$total cpu_us_per_op=$(per "$TIMERS") timers=$TIMERS cpu_s=$cpu_s init_s=$init dispatch_s=$dispatch last_deadline_s=$last excess_s=$excess $common"
            ;;
        *) die "unknown benchmark $bench" ;;
    esac
}

case "${1:-}" in
    build) shift; build "$@" ;;
    run) shift; [ $# -eq 2 ] || die "usage: libxev.sh run BENCH io_uring|epoll"; run "$@" ;;
    callgrind-target) shift; [ $# -eq 2 ] || die "usage: libxev.sh callgrind-target BENCH io_uring|epoll"; callgrind_target "$@" ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
esac
