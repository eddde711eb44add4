// The http group's tables and issue 14's targets (see run.sh's http.sh and BENCHMARKS.md).

/// The http configurations of this run, in the order run.sh measures them.
@MainActor func httpBenches() -> [String] {
    benches().filter { $0.hasPrefix("http-") }
}

/// "http-c500-pinned" -> "500 connections, 1 server thread pinned (wrk on the other CPU)".
func httpTitle(_ bench: String) -> String {
    let parts = bench.split(separator: "-")
    guard parts.count == 3 else { return bench }
    let conns = parts[1].dropFirst()
    return parts[2] == "pinned"
        ? "\(conns) connections, 1 server thread pinned to CPU 0, wrk on CPU 1"
        : "\(conns) connections, 2 server threads and 2 wrk threads, unpinned"
}

/// The order of the rows: EvLoop's, then the peers.
let httpPeerOrder = ["swiftnio", "libuv/epoll", "c/epoll", "c/io_uring"]

@MainActor func httpTable(_ bench: String) {
    let impls = implementations(bench)
    guard !impls.isEmpty else { return }
    let rows = impls.filter { !httpPeerOrder.contains($0) } + httpPeerOrder.filter { impls.contains($0) }
    let nio = impls.contains("swiftnio") ? "swiftnio" : nil
    let floor = impls.contains("c/epoll") ? "c/epoll" : nil
    say("### http: \(httpTitle(bench))")
    say()
    var header = "| implementation | requests/s (median) | range | server CPU µs/request | p50 µs | p99 µs | errors |"
    var rule = "|---|---:|---:|---:|---:|---:|---:|"
    if nio != nil { header += " ÷ swiftnio (CPU) |"; rule += "---:|" }
    if floor != nil { header += " CPU ÷ c/epoll |"; rule += "---:|" }
    say(header)
    say(rule)
    for impl in rows {
        let s = stats(bench, impl)
        let errors = stats(bench, impl, "errors").values.reduce(0, +)
        var row = "| \(impl) | \(num(s.median)) | \(range(s)) | \(num(stats(bench, impl, "cpu_us_per_op").median))"
        row += " | \(num(stats(bench, impl, "p50_us").median)) | \(num(stats(bench, impl, "p99_us").median)) | \(num(errors)) |"
        if let nio { row += " \(ratioCell(bench, impl, nio)) |" }
        if let floor { row += " \(ratio(cpuFigure(bench, impl), cpuFigure(bench, floor))) |" }
        say(row)
    }
    say()
}

@MainActor func httpTables() {
    let all = httpBenches()
    guard !all.isEmpty else { return }
    for bench in all { httpTable(bench) }
    say("wrk's GET / on keep-alive connections, every server answering with the same 78-byte \"Hello, World!\" response; medians (range) of the interleaved rounds. Server CPU is utime + stime of the server process (/proc/PID/stat before and after the wrk run) divided by the requests wrk counted; p50/p99 are wrk's latency distribution; errors are non-2xx responses plus socket errors, summed over the rounds. ev-http runs with --idle-timeout 0, as no peer has an idle timeout.")
    say()
}

/// Issue 14's targets, judged on the pinned configurations (one server thread on its own
/// CPU: the figures that do not depend on how the scheduler spreads two threads).
@MainActor func httpTargets() {
    let pinned = httpBenches().filter { $0.hasSuffix("-pinned") }
    guard !pinned.isEmpty else { return }
    say("### Targets (issue 14, http)")
    say()
    let rounds = Set(records.filter { $0.bench.hasPrefix("http-") }.compactMap { $0.fields["round"] }).count
    if rounds < 3 { say("**The http group ran \(rounds) round\(rounds == 1 ? "" : "s"): the verdicts below are indicative only.**"); say() }
    say("| target | this run | verdict |")
    say("|---|---|---|")
    var evImpls: [String] = []
    for b in pinned {
        for i in implementations(b) where i.hasPrefix("evloop/") && !evImpls.contains(i) { evImpls.append(i) }
    }
    func row(_ label: String, _ a: Double, _ b: Double, lower: Bool, factor: Double, _ cell: String) {
        guard a.isFinite, b.isFinite, b > 0 else {
            say("| \(label) | not measured | – |")
            return
        }
        let (ok, short) = judge(a, b, lower: lower, factor: factor)
        say("| \(label) | \(cell) | \(verdict(ok, short)) |")
    }
    for bench in pinned {
        let c = bench.split(separator: "-")[1]
        for ev in evImpls {
            let r = stats(bench, ev).median, n = stats(bench, "swiftnio").median
            row("\(c): \(ev) ≥ 2 × swiftnio requests/s", r, n, lower: false, factor: 2,
                "\(num(r)) vs \(num(n)): \(ratio(r, n))")
            let x = cpuFigure(bench, ev), y = cpuFigure(bench, "swiftnio")
            row("\(c): \(ev) ≤ 0.5 × swiftnio CPU/request", x, y, lower: true, factor: 0.5,
                "\(num(x)) vs \(num(y)) µs: \(ratio(x, y))")
        }
    }
    if let c500 = pinned.first(where: { $0.hasPrefix("http-c500-") }) {
        for suffix in ["", "/async"] {
            let u = stats(c500, "evloop/io_uring" + suffix).median, e = stats(c500, "evloop/epoll" + suffix).median
            if suffix == "/async" && u.isNaN && e.isNaN { continue }
            row("c500: evloop/io_uring\(suffix) ≥ 1.15 × evloop/epoll\(suffix) requests/s", u, e, lower: false, factor: 1.15,
                "\(num(u)) vs \(num(e)): \(ratio(u, e))")
        }
    }
    for bench in pinned {
        let c = bench.split(separator: "-")[1]
        for ev in evImpls {
            let x = cpuFigure(bench, ev), y = cpuFigure(bench, "c/epoll")
            row("\(c): \(ev) CPU/request ≤ 1.3 × c/epoll's", x, y, lower: true, factor: 1.3,
                "\(num(x)) vs \(num(y)) µs: \(ratio(x, y))")
        }
    }
    say()
}
