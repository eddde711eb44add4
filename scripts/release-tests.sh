#!/usr/bin/env bash
# The whole suite built with optimization (-c release), in parallel, as scripts/test.sh runs
# the debug one:
#
#   bash scripts/release-tests.sh                 # what scripts/test.sh runs
#   bash scripts/release-tests.sh --filter AsyncOperationTests
#
# Why a second build: the conformance suite ran only in debug builds, but users ship
# release ones, and the optimizer changes what a test can see. It ends an object's lifetime
# at its last use rather than at the end of its scope, and it removes copies that a debug
# build makes. Both hide bugs in debug:
# - Tests that handed completions to containers that do not retain them (TimerHeap,
#   CompletionQueue) and then let them go crashed in release.
# - A task's `sleep(for:)` measured from a cached clock ended early under load (PITFALLS F2).
# - Releasing a callback closure while it runs crashed only in release: a debug build
#   copies the closure before calling it (BENCHMARKS.md, on `CallbackReplacementTests`).
#
# `@testable import` needs -enable-testing, which a release build does not pass by itself.
# Tests that use a debug-only test hook (`#if DEBUG` in the library, such as
# `Resolver.lookupDelayForTesting` or `UringLoop.injectedEnterResults`) are compiled out
# here: they run in the debug suite. The build has a scratch path of its own
# (.build-release-tests, ignored by git), so it never makes the debug build or the release
# products in .build recompile.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=.build-release-tests
swift build -c release --build-tests -Xswiftc -enable-testing --scratch-path "$scratch"
set +e
swift test -c release -Xswiftc -enable-testing --scratch-path "$scratch" --skip-build "$@" 2>&1 |
    tee .release-test-output.log
status=${PIPESTATUS[0]}
set -e
if grep -q "EVLOOP TEST SKIPPED" .release-test-output.log; then
    echo "==== WARNING: some backend tests were SKIPPED in the release build (backend unavailable on this machine):" >&2
    grep "EVLOOP TEST SKIPPED" .release-test-output.log | sort | uniq -c >&2
fi
exit "$status"
