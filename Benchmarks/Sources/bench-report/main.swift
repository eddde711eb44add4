// bench-report: turns the RESULT lines of a run into the tables of BENCHMARKS.md.
//
//   bench-report results.txt [more.txt ...]
//
// Every benchmark program prints `RESULT bench=... impl=... value=... unit=... op=...
// ops=... seconds=... cpu_us_per_op=... allocs_per_op=... [extra=...]`; run.sh collects
// them, several rounds interleaved (A B C A B C ...). This prints, per benchmark, the
// median and range of each implementation, the CPU time and allocations per operation,
// the ratios to the peers measured in the same run (plain C, SwiftNIO), the ratios to the
// anchors (libxev, libuv, SwiftNIO measured in November 2026 on the same kind of machine,
// listed in BENCHMARKS.md, "Anchors": a different run, so a looser comparison), and then
// every target of the benchmark issue with the measured figure and, when it is missed, by
// how much.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BenchSupport

struct Record {
    var fields: [String: String]
    var bench: String { fields["bench"] ?? "?" }
    var impl: String { fields["impl"] ?? "?" }
    func number(_ key: String) -> Double? { fields[key].flatMap(Double.init) }
}

/// Median, min and max of the values of one implementation on one benchmark.
struct Stats {
    var values: [Double]
    var median: Double {
        let s = values.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    var min: Double { values.min() ?? .nan }
    var max: Double { values.max() ?? .nan }
    var isEmpty: Bool { values.isEmpty }
}

// MARK: Reading

var records: [Record] = []
var failures: [String] = []
let files = Array(CommandLine.arguments.dropFirst())
if files.isEmpty { BenchOutput.fail("usage: bench-report RESULTS_FILE...") }
for path in files {
    guard let f = fopen(path, "r") else { BenchOutput.fail("cannot open \(path)") }
    var line: UnsafeMutablePointer<CChar>? = nil
    var capacity = 0
    while getline(&line, &capacity, f) > 0 {
        let text = String(cString: line!).trimmingNewline()
        if text.hasPrefix("FAILED ") { failures.append(String(text.dropFirst(7))) }
        guard text.hasPrefix("RESULT ") else { continue }
        var fields: [String: String] = [:]
        for part in text.dropFirst(7).split(separator: " ") {
            guard let eq = part.firstIndex(of: "=") else { continue }
            fields[String(part[..<eq])] = String(part[part.index(after: eq)...])
        }
        records.append(Record(fields: fields))
    }
    free(line)
    fclose(f)
}

extension String {
    func trimmingNewline() -> String {
        var s = self
        while s.hasSuffix("\n") || s.hasSuffix("\r") { s.removeLast() }
        return s
    }
}

@MainActor func stats(_ bench: String, _ impl: String, _ key: String = "value") -> Stats {
    Stats(values: records.filter { $0.bench == bench && $0.impl == impl }.compactMap { $0.number(key) })
}

/// Implementations seen for `bench`, in order of first appearance.
@MainActor func implementations(_ bench: String) -> [String] {
    var seen: [String] = []
    for r in records where r.bench == bench && !seen.contains(r.impl) { seen.append(r.impl) }
    return seen
}

@MainActor func benches() -> [String] {
    var seen: [String] = []
    for r in records where !seen.contains(r.bench) { seen.append(r.bench) }
    return seen
}

// MARK: Formatting

@MainActor func num(_ v: Double) -> String {
    if v.isNaN { return "–" }
    if abs(v) >= 1000 { return BenchOutput.grouped(v) }
    if abs(v) >= 100 { return BenchOutput.fixed(v, 0) }
    if abs(v) >= 10 { return BenchOutput.fixed(v, 1) }
    return BenchOutput.fixed(v, 2)
}

@MainActor func range(_ s: Stats) -> String {
    s.values.count > 1 ? "\(num(s.min))–\(num(s.max))" : "(1 run)"
}

@MainActor func ratio(_ a: Double, _ b: Double) -> String {
    guard a.isFinite, b.isFinite, b > 0 else { return "–" }
    return BenchOutput.fixed(a / b, 2) + "×"
}

/// Allocations per operation: exact zero prints as 0; "n/a" when not counted.
@MainActor func allocs(_ bench: String, _ impl: String) -> String {
    let rs = records.filter { $0.bench == bench && $0.impl == impl }
    let values = rs.compactMap { $0.number("allocs_per_op") }
    if values.isEmpty { return "n/a" }
    let worst = values.max()!
    if worst == 0 { return "0" }
    let total = rs.compactMap { $0.number("allocs") }.reduce(0, +)
    return "\(BenchOutput.fixed(worst, 4)) (max; \(BenchOutput.grouped(total)) in all runs)"
}

@MainActor func say(_ s: String = "") { BenchOutput.say(s) }

// MARK: Anchors (November 2026, 2-vCPU KVM guest, Linux 6.18; another run, same kind of
// machine; the same figures are listed in BENCHMARKS.md, "Anchors")

struct Anchor {
    let name: String
    let value: Double
}

let anchors: [String: [Anchor]] = [
    "ping-pongs": [
        Anchor(name: "C epoll (anchors)", value: 47_500),
        Anchor(name: "libxev io_uring", value: 39_300),
        Anchor(name: "libuv", value: 34_500),
        Anchor(name: "libxev epoll", value: 32_300),
        Anchor(name: "SwiftNIO (anchors)", value: 29_100),
    ],
    "ping-udp1": [
        Anchor(name: "libxev io_uring", value: 139_000),
        Anchor(name: "libxev epoll", value: 89_100),
        Anchor(name: "libuv", value: 150_600),
    ],
    "udp_pummel_1v1": [
        Anchor(name: "libxev io_uring", value: 162_800),
        Anchor(name: "libxev epoll", value: 100_900),
        Anchor(name: "libuv", value: 163_000),
    ],
    "async1": [
        Anchor(name: "libxev io_uring", value: 110_800),
        Anchor(name: "libxev epoll", value: 113_100),
        Anchor(name: "libuv", value: 118_600),
    ],
    "async2": [Anchor(name: "libxev io_uring", value: 57_400), Anchor(name: "libxev epoll", value: 62_000)],
    "async4": [Anchor(name: "libxev io_uring", value: 27_600), Anchor(name: "libxev epoll", value: 32_800)],
    "async_pummel_1": [
        Anchor(name: "libxev io_uring", value: 396_000),
        Anchor(name: "libxev epoll", value: 388_000),
        Anchor(name: "libuv (pinned)", value: 91_900),
    ],
    "async_pummel_2": [Anchor(name: "libxev io_uring", value: 308_000), Anchor(name: "libxev epoll", value: 392_000)],
    "async_pummel_4": [Anchor(name: "libxev io_uring", value: 187_000), Anchor(name: "libxev epoll", value: 184_000)],
    "async_pummel_8": [Anchor(name: "libxev io_uring", value: 86_000), Anchor(name: "libxev epoll", value: 106_000)],
]

// MARK: Tables

let pingPeers = ["c/epoll", "c/io_uring", "c/blocking", "swiftnio"]

@MainActor func pingPongTable(_ bench: String, title: String) {
    let impls = implementations(bench)
    guard !impls.isEmpty else { return }
    let peerMedians = pingPeers.map { ($0, stats("ping-pongs", $0).median, stats("ping-pongs", $0, "cpu_us_per_op").median) }
    say("### \(title)")
    say()
    var header = "| implementation | roundtrips/s (median) | range | CPU µs/roundtrip | CPU-bound rate | allocations/roundtrip |"
    var rule = "|---|---:|---:|---:|---:|---:|"
    for (peer, median, _) in peerMedians where !median.isNaN {
        header += " ÷ \(peer) |"
        rule += "---:|"
    }
    say(header)
    say(rule)
    for impl in impls {
        let s = stats(bench, impl)
        let cpu = stats(bench, impl, "cpu_us_per_op")
        var row = "| \(bench == "ping-pongs-async" ? impl + " (async)" : impl) | \(num(s.median)) | \(range(s)) | \(num(cpu.median)) | \(num(cpuBoundRate(bench, impl))) | \(allocs(bench, impl)) |"
        for (_, median, _) in peerMedians where !median.isNaN {
            row += " \(ratio(s.median, median)) |"
        }
        say(row)
    }
    say()
    if let a = anchors["ping-pongs"], bench == "ping-pongs" {
        say("Against the anchors (ANCHORS.md, one earlier interleaved run; roundtrips/s):")
        say()
        var header = "| implementation |"
        var rule = "|---|"
        for x in a { header += " ÷ \(x.name) (\(num(x.value))) |"; rule += "---:|" }
        say(header)
        say(rule)
        for impl in impls {
            var row = "| \(impl) |"
            for x in a { row += " \(ratio(stats(bench, impl).median, x.value)) |" }
            say(row)
        }
        say()
        say("CPU per roundtrip against the C floor of this run: " + impls.map { impl in
            "\(impl) \(ratio(stats(bench, impl, "cpu_us_per_op").median, stats(bench, "c/epoll", "cpu_us_per_op").median)) of c/epoll"
        }.joined(separator: ", ") + ".")
        say()
    }
}

@MainActor func genericTable(_ bench: String) {
    let impls = implementations(bench)
    guard let first = records.first(where: { $0.bench == bench }) else { return }
    let unit = first.fields["unit"] ?? ""
    let op = first.fields["op"] ?? "op"
    say(bench == "instructions"
        ? "### Instructions per ping-pong roundtrip (callgrind, user space, client + server)"
        : "### \(bench)")
    say()
    var anchorList = anchors[bench] ?? []
    if bench == "instructions" {
        // Same-run peer: the plain-C epoll loop.
        let c = stats(bench, "c/epoll").median
        if !c.isNaN { anchorList = [Anchor(name: "c/epoll, this run", value: c)] }
    }
    let showBound = !cpuBoundRate(bench, impls.first ?? "").isNaN
    var header = "| implementation | \(unit) (median) | range | CPU µs/\(op) |\(showBound ? " CPU-bound rate |" : "") allocations/\(op) |"
    var rule = "|---|---:|---:|---:|\(showBound ? "---:|" : "")---:|"
    let extraKey: String? = bench == "udp_pummel_1v1" ? "sent_per_s" : nil
    if extraKey != nil { header += " sent/s (median) |"; rule += "---:|" }
    for a in anchorList { header += " ÷ \(a.name) (\(num(a.value))) |"; rule += "---:|" }
    say(header)
    say(rule)
    for impl in impls {
        let s = stats(bench, impl)
        var row = "| \(impl) | \(num(s.median)) | \(range(s)) | \(num(stats(bench, impl, "cpu_us_per_op").median)) |\(showBound ? " \(num(cpuBoundRate(bench, impl))) |" : "") \(allocs(bench, impl)) |"
        if let k = extraKey { row += " \(num(stats(bench, impl, k).median)) |" }
        for a in anchorList { row += " \(ratio(s.median, a.value)) |" }
        say(row)
    }
    say()
}

@MainActor func timersTable() {
    let bench = "million-timers"
    let impls = implementations(bench)
    guard !impls.isEmpty else { return }
    let count = records.first(where: { $0.bench == bench })?.fields["timers"] ?? "?"
    say("### million-timers (\(count) timers)")
    say()
    say("| implementation | wall s (median) | range | CPU s | init s | dispatch s | wall − last deadline, s | peak RSS MB | allocations/timer firing | allocations/timer arming | CPU ÷ libxev epoll (0.37 s for 1 M) | CPU ÷ SwiftNIO (this run) |")
    say("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    let nioCPU = stats(bench, "swiftnio", "cpu_s").median
    let perMillion = (Double(count) ?? 1_000_000) / 1_000_000
    for impl in impls {
        let s = stats(bench, impl)
        let cpu = stats(bench, impl, "cpu_s").median
        var row = "| \(impl) | \(num(s.median)) | \(range(s)) | \(num(cpu)) | \(num(stats(bench, impl, "init_s").median))"
        row += " | \(num(stats(bench, impl, "dispatch_s").median)) | \(num(stats(bench, impl, "excess_s").median))"
        row += " | \(num(stats(bench, impl, "peak_rss_mb").median)) | \(allocs(bench, impl))"
        row += " | \(num(stats(bench, impl, "init_allocs_per_timer").median))"
        row += " | \(ratio(cpu, 0.37 * perMillion)) | \(ratio(cpu, nioCPU)) |"
        say(row)
    }
    say()
    say("Anchors: libxev 1 M timers: epoll 1.00 s wall / 0.37 s CPU, io_uring 25.9 s wall / 25.3 s CPU; SwiftNIO scheduleTask 5.3 s total (255 MB), scheduleCallback 5.4 s (77 MB). The last deadline is \(num(Double(count).map { $0 / 1000 + 1 } ?? .nan)) ms, so the wall time cannot be lower; CPU time and the excess are the figures that compare.")
    say()
}

@MainActor func echoTable() {
    let echo = benches().filter { $0.hasPrefix("echo-tcp") }
    guard !echo.isEmpty else { return }
    say("### Echo throughput (ev-echo-client against ev-echo-tcp, 64-byte messages)")
    say()
    var impls: [String] = []
    for b in echo { for i in implementations(b) where !impls.contains(i) { impls.append(i) } }
    var header = "| connections, server threads |"
    var rule = "|---|"
    for i in impls { header += " \(i) |"; rule += "---:|" }
    say(header + "")
    say(rule)
    for b in echo {
        let label = b.dropFirst("echo-tcp-".count).replacingDashes()
        var row = "| \(label) |"
        for i in impls {
            let s = stats(b, i)
            row += s.isEmpty ? " – |" : s.values.count > 1 ? " \(num(s.median)) (\(num(s.min))–\(num(s.max))) |" : " \(num(s.median)) |"
        }
        say(row)
    }
    say()
    say("Roundtrips/s, median (range) of the rounds; the client runs on one loop on one thread; nothing is pinned, so a run's figure depends on where the scheduler puts the threads (ANCHORS.md: unpinned runs swing several-fold).")
    say()
}

extension Substring {
    func replacingDashes() -> String {
        // "c100-t2" -> "100 conns, 2 threads"
        let parts = split(separator: "-")
        guard parts.count == 2 else { return String(self) }
        return "\(parts[0].dropFirst()) conn, \(parts[1].dropFirst()) thr"
    }
}

// MARK: Targets

/// The rate a pinned benchmark would reach if CPU 0 were its own: 1 s / CPU time per
/// operation (in the benchmark's own unit). Ping-pongs and asyncN run both ends on one
/// CPU, so their wall time per operation can never be below their CPU time; on a machine
/// shared with other work the CPU time is the figure that does not depend on the load.
@MainActor func cpuBoundRate(_ bench: String, _ impl: String) -> Double {
    let cpu = stats(bench, impl, "cpu_us_per_op").median
    guard cpu.isFinite, cpu > 0 else { return .nan }
    switch bench {
    case "ping-pongs", "ping-pongs-async", "ping-pongs-concrete", "ping-udp1":
        return 1e6 / cpu
    case let b where b.hasPrefix("async") && !b.hasPrefix("async_pummel"):
        // op = one notification (either side); the figure counts the main loop's
        // callbacks per worker: 2 notifications per counted callback, N workers.
        let threads = Double(b.dropFirst("async".count)) ?? 1
        return 1e6 / cpu / (2 * threads)
    default:
        return .nan
    }
}

@MainActor func targets() {
    say("### Targets")
    say()
    say("Each target is judged twice: on the wall-clock figure of this run (what the issue names),")
    say("and on CPU time per operation (user + sys, whole process), which does not depend on")
    say("what else the machine runs. With both ends pinned to one CPU, 1 s ÷ CPU per operation is")
    say("the rate the benchmark reaches when that CPU is its own (\"CPU-bound rate\").")
    say()
    say("| target | wall clock | verdict (wall) | CPU time | verdict (CPU) |")
    say("|---|---|---|---|---|")
    func verdict(_ ok: Bool, _ shortfall: String) -> String { ok ? "met" : "**missed** (\(shortfall))" }
    func pct(_ x: Double) -> String { BenchOutput.fixed(x * 100, 1) + " %" }
    func cpu(_ bench: String, _ impl: String) -> Double { stats(bench, impl, "cpu_us_per_op").median }
    func us(_ v: Double) -> String { BenchOutput.fixed(v, 1) + " µs" }

    let uring = stats("ping-pongs", "evloop/io_uring").median
    let uringCPU = cpu("ping-pongs", "evloop/io_uring")
    let peers: [(String, String, Double)] = [
        ("c/epoll", "≥ plain-C epoll", 1.0),
        ("c/io_uring", "within 10 % of plain-C io_uring", 0.9),
        ("swiftnio", "≥ 1.5 × SwiftNIO", 1.5),
    ]
    if uring.isNaN {
        say("| ping-pong io_uring targets | no io_uring ping-pong result in this run | not measured | | |")
    }
    for (peer, label, factor) in peers where !uring.isNaN {
        let p = stats("ping-pongs", peer).median
        let pc = cpu("ping-pongs", peer)
        guard !p.isNaN else { continue }
        let r = uring / p
        let rc = pc / uringCPU   // >1: EvLoop uses less CPU per roundtrip
        let wallShort = factor == 1.0 ? "\(pct(1 - r)) slower" : factor < 1 ? "\(pct(1 - r)) slower, \(pct(factor - r)) past the allowance" : "short of \(BenchOutput.fixed(factor, 1))× by \(pct(1 - r / factor))"
        let cpuShort = factor == 1.0 ? "\(pct(1 / rc - 1)) more CPU" : factor < 1 ? "\(pct(1 / rc - 1)) more CPU (allowance \(pct(1 / factor - 1)))" : "the peer's CPU per roundtrip is \(BenchOutput.fixed(rc, 2))× EvLoop's, \(BenchOutput.fixed(factor, 1))× wanted"
        say("| ping-pong io_uring \(label) | \(num(uring)) vs \(num(p)) roundtrips/s: \(ratio(uring, p)) | \(verdict(r >= factor, wallShort)) | \(us(uringCPU)) vs \(us(pc)) per roundtrip: \(BenchOutput.fixed(rc, 2))× | \(verdict(rc >= factor, cpuShort)) |")
    }
    for impl in implementations("ping-pongs-async") {
        let a = stats("ping-pongs-async", impl).median
        let c = stats("ping-pongs", impl).median
        let ac = cpu("ping-pongs-async", impl)
        let cc = cpu("ping-pongs", impl)
        guard !c.isNaN else { continue }
        let r = a / c
        let rc = cc / ac
        say("| async ping-pong within 15 % of the callback ping-pong (\(impl)) | \(ratio(a, c)) | \(verdict(r >= 0.85, "\(pct(1 - r)) slower")) | \(us(ac)) vs \(us(cc)) per roundtrip | \(verdict(rc >= 0.85, "\(pct(ac / cc - 1)) more CPU")) |")
    }
    // Timers: libxev's figures are for 1 M timers; scaled when another count ran.
    let count = Double(records.first(where: { $0.bench == "million-timers" })?.fields["timers"] ?? "") ?? 1_000_000
    let scale = count / 1_000_000
    for impl in implementations("million-timers") where impl.hasPrefix("evloop/") {
        let cpuS = stats("million-timers", impl, "cpu_s").median
        let wall = stats("million-timers", impl).median
        let libxevCPU = 0.37 * scale
        let libxevWall = 1.00 * scale
        say("| million-timers faster than libxev epoll (\(num(libxevWall)) s wall, \(num(libxevCPU)) s CPU\(scale != 1 ? ", scaled to \(Int(count)) timers" : "")) — \(impl) | \(num(wall)) s | \(verdict(wall < libxevWall, "\(ratio(wall, libxevWall)) libxev's")) | \(num(cpuS)) s | \(verdict(cpuS < libxevCPU, "\(ratio(cpuS, libxevCPU)) libxev's")) |")
    }
    // Async notifications against libuv (its figures are wall-clock, pinned).
    for (bench, libuv) in [("async1", 118_600.0), ("async_pummel_1", 91_900.0)] {
        for impl in implementations(bench) {
            let v = stats(bench, impl).median
            let r = v / libuv
            let bound = cpuBoundRate(bench, impl)
            let cpuCell = bound.isNaN ? "\(us(cpu(bench, impl))) per callback" : "CPU-bound rate \(num(bound))/s (\(ratio(bound, libuv)))"
            let cpuVerdict = bound.isNaN ? "–" : verdict(bound >= libuv, "\(pct(1 - bound / libuv)) lower")
            say("| \(bench) ≥ libuv (\(num(libuv))/s) — \(impl) | \(num(v))/s (\(ratio(v, libuv))) | \(verdict(r >= 1, "\(pct(1 - r)) lower")) | \(cpuCell) | \(cpuVerdict) |")
        }
    }
    // Zero allocations (exact counts: the same whatever the load).
    let zeroBenches = [("ping-pongs", "roundtrip"), ("ping-pongs-async", "roundtrip"), ("ping-udp1", "roundtrip"),
                       ("udp_pummel_1v1", "datagram"), ("timer-rearm", "rearmed timer"),
                       ("million-timers", "fired timer"), ("async1", "notification"), ("async_pummel_1", "callback")]
    for (bench, what) in zeroBenches {
        for impl in implementations(bench) where impl.hasPrefix("evloop/") {
            let a = allocs(bench, impl)
            if a == "n/a" {
                say("| zero allocations per \(what) (\(bench), \(impl)) | not counted (no shim) | not measured | | |")
            } else {
                say("| zero allocations per \(what) (\(bench), \(impl)) | \(a) | \(verdict(a == "0", "\(a) per \(what)")) | (exact count) | |")
            }
        }
    }
    say()
}

// MARK: Output

say("## Results")
say()
let runs = Set(records.compactMap { $0.fields["round"] }).count
say("\(records.count) results\(runs > 0 ? ", \(runs) rounds" : ""). Medians and ranges over the rounds; each round ran every implementation once, interleaved.")
say()
pingPongTable("ping-pongs", title: "ping-pongs (TCP, 5-byte PING, both ends pinned to one CPU)")
pingPongTable("ping-pongs-async", title: "ping-pongs with async/await (EvAsync), same setting")
if !implementations("ping-pongs-concrete").isEmpty {
    pingPongTable("ping-pongs-concrete",
                  title: "ping-pongs on the concrete backend type (UringLoop, EpollLoop, PollLoop) instead of the runtime-chosen LoopCore, same setting")
}
for bench in ["instructions", "ping-udp1", "udp_pummel_1v1", "timer-rearm"] where !implementations(bench).isEmpty {
    genericTable(bench)
}
timersTable()
for bench in benches() where bench.hasPrefix("async") {
    genericTable(bench)
}
echoTable()
targets()
if !failures.isEmpty {
    say("### Failed runs")
    say()
    for f in failures { say("- \(f)") }
    say()
}
