#!/usr/bin/env bash
# Builds the DocC documentation of every public module (Ev, EvLoop, EvAsync, EvReadiness,
# EvBackendEpoll, EvBackendPoll, EvBackendUring) and fails on any warning: a symbol link
# (``Name``) or an article link (<doc:Name>) that does not resolve, a curated topic that
# does not exist, a malformed directive. Each module has a catalog,
# Sources/<Module>/<Module>.docc, with its overview page and recipes; this script also
# fails when one is missing.
#
# Why no swift-docc-plugin: the plugin would be a package dependency of the library, which
# otherwise depends on nothing but the C library and liburing, and every user of the
# package would resolve and fetch it for a documentation step they never run. The toolchain
# already has both halves: the compiler writes each module's public symbol graph while it
# builds (-emit-symbol-graph), and `docc convert` turns a catalog and those graphs into an
# archive, with --warnings-as-errors. That is what the plugin does, minus its dependency.
# The build uses a scratch directory of its own (.build/docs-build: the extra compiler
# flags would otherwise invalidate the ordinary debug build) and builds only the library
# (target Ev depends on every library module); after the first run it is incremental.
# `swift package dump-symbol-graph`, built into SwiftPM, would reuse the ordinary build,
# but SwiftPM 6.3's fails ("Couldn't load module 'EvLoopPackageTests'") unless the tests
# are built too, so its exit status cannot be trusted here.
#
# Output: .build/docs/<Module>.doccarchive (static-hosting layout; serve the directory and
# open /documentation/<module>/ with a lowercase module name).
# Usage: bash scripts/docs.sh
set -euo pipefail
cd "$(dirname "$0")/.."

modules=(EvLoop Ev EvAsync EvReadiness EvBackendEpoll EvBackendPoll EvBackendUring)
out=.build/docs
# Every Swift library module under Sources/ must be listed above (and so be documented).
for dir in Sources/*/; do
    m=$(basename "$dir")
    [[ $m == C* ]] && continue        # C modules (CEvSys, CLiburing): no Swift API of their own
    [[ " ${modules[*]} " == *" $m "* ]] || { echo "docs.sh: module $m is not documented (add it to scripts/docs.sh)" >&2; exit 1; }
done

# The compiler writes a module's graph when it compiles the module, so the graphs live with
# the build they come from and stay current across incremental builds.
scratch=.build/docs-build
graphs=$scratch/symbol-graphs
build_library() {
    mkdir -p "$graphs"
    echo "==== building the library with symbol graphs (swift build --target Ev -emit-symbol-graph)"
    if ! swift build --scratch-path "$scratch" --target Ev \
        -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$PWD/$graphs" \
        -Xswiftc -symbol-graph-minimum-access-level -Xswiftc public \
        -Xswiftc -emit-extension-block-symbols >"$scratch/build.log" 2>&1; then
        cat "$scratch/build.log" >&2
        echo "docs.sh: the build failed" >&2
        exit 1
    fi
    grep -v '^\[' "$scratch/build.log" || true
}
all_graphs_present() {
    local m
    for m in "${modules[@]}"; do [[ -f $graphs/$m.symbols.json ]] || return 1; done
}
mkdir -p "$scratch"
build_library
if ! all_graphs_present; then
    # A build made before the graphs directory existed (or after it was removed): rebuild.
    echo "==== some symbol graphs are missing: rebuilding from scratch"
    rm -rf "$scratch"
    mkdir -p "$scratch"
    build_library
    all_graphs_present || { echo "docs.sh: the compiler wrote no symbol graph for some module" >&2; exit 1; }
fi
rm -rf "$out"
mkdir -p "$out"

failed=()
for m in "${modules[@]}"; do
    catalog=Sources/$m/$m.docc
    if [[ ! -f $catalog/$m.md ]]; then
        echo "docs.sh: $catalog/$m.md is missing" >&2
        failed+=("$m")
        continue
    fi
    # The module's own graph and its extensions of other modules (Module@Other), nothing
    # else: docc documents one module per archive.
    mkdir -p "$out/symbol-graphs/$m"
    cp "$graphs/$m.symbols.json" "$out/symbol-graphs/$m/"
    for ext in "$graphs/$m@"*.symbols.json; do
        [[ -e $ext ]] && cp "$ext" "$out/symbol-graphs/$m/"
    done
    echo "==== $m"
    if ! docc convert "$catalog" \
        --additional-symbol-graph-dir "$out/symbol-graphs/$m" \
        --fallback-display-name "$m" \
        --fallback-bundle-identifier "evloop.$m" \
        --output-path "$out/$m.doccarchive" \
        --warnings-as-errors 2>&1 | tee "$out/$m.log"; then
        failed+=("$m")
    elif grep -qE '(warning|error):' "$out/$m.log"; then
        failed+=("$m")
    fi
done

if ((${#failed[@]})); then
    echo "docs.sh: FAILED for ${failed[*]} (diagnostics above)" >&2
    exit 1
fi
echo "docs.sh: OK, ${#modules[@]} modules documented without warnings in $out/"
