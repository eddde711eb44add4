#!/usr/bin/env bash
# The test command: installs what is missing (scripts/setup.sh), then runs the whole
# suite (unit tests and the conformance suite on every backend) with plain swift test,
# in parallel, as a Swift developer runs it. Tests that depend on process-wide state
# (RLIMIT_NOFILE, the whole descriptor table, the thread count) run in child processes of
# their own (Tests/EvConformanceTests/ProcessIsolation.swift), so no --no-parallel is needed.
# A backend this machine cannot run is reported as SKIPPED on stderr and by Swift Testing.
# Without arguments it also runs scripts/check-products.sh (the one-backend products),
# scripts/release-tests.sh (the same suite built with optimization, in .build-release-tests:
# lifetimes end earlier there, which hides nothing a debug build would) and
# scripts/sanitize.sh --ci (ThreadSanitizer on the cross-thread tests and the differential
# tester: a sanitized build of its own in .build-tsan, then about two minutes of tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --build-tests
# (set +e: with pipefail a failing suite would end the script here, before the skip
# report and the checks below.)
set +e
swift test --skip-build "$@" 2>&1 | tee .test-output.log
status=${PIPESTATUS[0]}
set -e
if grep -q "EVLOOP TEST SKIPPED" .test-output.log; then
    echo "==== WARNING: some backend tests were SKIPPED (backend unavailable on this machine):" >&2
    grep "EVLOOP TEST SKIPPED" .test-output.log | sort | uniq -c >&2
fi
# The one-backend products (EvEpoll, EvPoll) build and link without liburing (about 20 s).
if [[ $# -eq 0 ]]; then
    bash scripts/check-products.sh || status=1
    bash scripts/release-tests.sh || status=1
    bash scripts/sanitize.sh --ci || status=1
fi
exit "$status"
