#!/usr/bin/env bash
# A longer run of the differential tester (Tests/EvConformanceTests/Differential): random
# programs on every backend, each checked for the loop's invariants and for the outcome
# the semantics fix, and compared across backends. The test command runs 3,000 seeds per
# backend from seed 0; this runs more, from other seeds. See docs/TESTING.md.
#
#   bash scripts/difftest.sh --seeds 50000            # seeds 1,000,000.. on every backend
#   bash scripts/difftest.sh --minutes 30             # batches of 10,000 random seeds until then
#   bash scripts/difftest.sh --seeds 2000 --first 7 --backends epoll,poll
#   bash scripts/difftest.sh --seed 1234              # one seed, its whole trace printed
#
# A failing seed is printed with its replay command and the trace's tail; the script
# stops at the first failing batch and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds="" minutes="" first="" one="" backends=""
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) seeds="$2"; shift 2 ;;
        --minutes) minutes="$2"; shift 2 ;;
        --first) first="$2"; shift 2 ;;
        --seed) one="$2"; shift 2 ;;
        --backends) backends="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "difftest: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$backends" ]; then export EV_TEST_BACKENDS="$backends"; fi

bash scripts/setup.sh
swift build --build-tests

# batch FIRST COUNT: runs COUNT seeds from FIRST on every backend, and the cross-backend
# comparison on the same seeds.
batch() {
    echo "==> differential: seeds $1..$(( $1 + $2 - 1 ))"
    local log=".difftest-output.log" status=0
    EV_DIFFTEST_FIRST="$1" EV_DIFFTEST_SEEDS="$2" swift test --skip-build \
        --filter 'DifferentialTests/(randomProgramsKeepTheInvariants|sameOutcomeOnEveryBackend)' >"$log" 2>&1 || status=$?
    grep -E '^\[.*differential|SKIPPED' "$log" || true
    if [ "$status" -ne 0 ]; then
        # The failure report: the seed, its replay command, the problems and the trace.
        grep -v -E '^(◇|↳ ///|\[0/1\])' "$log" | grep -A80 -m1 -E 'differential seed|differ$' || tail -80 "$log"
        echo "difftest: FAILED (full output in $log)" >&2
        exit 1
    fi
}

if [ -n "$one" ]; then
    EV_DIFFTEST_SEED="$one" swift test --skip-build --filter 'DifferentialTests/randomProgramsKeepTheInvariants'
elif [ -n "$minutes" ]; then
    end=$(( SECONDS + minutes * 60 ))
    while [ "$SECONDS" -lt "$end" ]; do
        # Seeds far from the test command's (0..2,999), different in every batch.
        batch $(( (RANDOM * 32768 + RANDOM) * 1000 + 1000000 )) 10000
    done
else
    batch "${first:-1000000}" "${seeds:-20000}"
fi
echo "difftest: every seed kept every invariant"
