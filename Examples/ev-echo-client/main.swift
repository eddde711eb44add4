// ev-echo-client: a load generator and checker for the echo servers.
//
// All connections run on one EvLoop loop on one thread. Each repeats: send a message,
// wait for the whole echo, verify every byte, record the latency. At the end it prints
// roundtrips per second, throughput and latency percentiles, and exits non-zero if any
// byte came back wrong, any connection failed, or the run could not finish.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

let tool = CommandLineTool(
    name: "ev-echo-client",
    summary: """
    Load generator and checker for ev-echo-tcp (or any TCP or Unix-socket echo server).
    Opens the given number of connections from one EvLoop loop; each sends a message, waits
    for the full echo, verifies every byte and repeats until the duration is over. Prints
    roundtrips/s, MB/s and latency percentiles (p50/p90/p99/max). A host name is resolved
    through EvLoop's Resolver (off the loop thread); the first address it gives is used.
    Exits 1 on any mismatch, connection error, connect timeout or unfinished roundtrip, 2 on
    a bad command line.
    """,
    options: [
        .hostName(),
        .requiredPort(help: "TCP port of the echo server (required unless --unix)"),
        OptionSpec("unix", value: "PATH", help: "connect to the Unix stream socket at PATH instead of TCP (@NAME: an abstract name)"),
        OptionSpec("connect-timeout", value: "SECONDS", help: "give up a connect that takes longer (a deadline on the connect)"),
        OptionSpec("connections", value: "N", default: "1", help: "concurrent connections"),
        OptionSpec("size", value: "BYTES", default: "64", help: "bytes per message"),
        OptionSpec("duration", value: "SECONDS", default: "3", help: "how long to keep sending (fractions allowed)"),
        .backend,
    ],
    examples: [
        "ev-echo-client --port 7000 --connections 8 --size 1024 --duration 3",
        "ev-echo-client --port 7000 --connections 1000 --duration 2",
        "ev-echo-client --host localhost --port 7000 --connect-timeout 2",
        "ev-echo-client --unix echo.sock --connections 4",
    ]
)

let options = tool.parseSharedOrExit()
let connections = tool.validate { () throws(OptionError) in try options.parsed.int("connections", in: 1...100_000) }
let size = tool.validate { () throws(OptionError) in try options.parsed.int("size", in: 1...(64 << 20)) }
let duration = tool.validate { () throws(OptionError) in try options.parsed.seconds("duration") }
let connectTimeout: Duration? = tool.validate { () throws(OptionError) -> Duration? in
    options.parsed.string("connect-timeout") == nil ? nil : try options.parsed.seconds("connect-timeout")
}
let unixPath = options.parsed.string("unix")
if unixPath == nil {
    guard options.parsed.string("port") != nil else {
        tool.usageError(.missingValue("port"))
    }
    if options.port == 0 { tool.usageError(.invalidValue(option: "port", value: "0", expected: "the server's port (1...65535)")) }
}

let limit = ExampleProcess.raiseDescriptorLimit()
if UInt64(connections) + 16 > limit {
    Report.fail(tool.name, "\(connections) connections need more descriptors than RLIMIT_NOFILE allows (\(limit)); raise it with ulimit -n")
}

let loop = ExampleProcess.openLoop(program: tool.name, backend: options.backend)
let address: SocketAddress
if let unixPath {
    do {
        address = unixPath.hasPrefix("@")
            ? try SocketAddress(abstractUnixName: String(unixPath.dropFirst()))
            : try SocketAddress(unixPath: unixPath)
    } catch {
        Report.fail(tool.name, "bad Unix socket path \(unixPath): \(error)", status: 2)
    }
} else {
    address = resolveTarget(host: options.host, port: options.port, on: loop)
}
Report.say("target: \(address), \(connections) connection(s), \(size)-byte messages, \(Report.fixed(Report.seconds(duration), 2)) s"
           + (connectTimeout.map { ", connect timeout \(Report.fixed(Report.seconds($0), 2)) s" } ?? ""))

/// The server's address: `host` as a numeric address, else resolved through the loop's
/// `Resolver` (getaddrinfo on a pool thread; the loop runs until the answer is back).
@MainActor
func resolveTarget(host: String, port: UInt16, on loop: LoopCore) -> SocketAddress {
    if let numeric = try? SocketAddress(host: host, port: port) { return numeric }
    let resolver: Resolver
    do {
        resolver = try Resolver()
    } catch {
        Report.fail(tool.name, "cannot start the resolver: \(error)")
    }
    defer { resolver.shutdown() }
    var outcome: Result<[SocketAddress], EvError>?
    do {
        try resolver.resolve(loop: loop, completion: Completion(), host: host, port: port) { _, result in
            outcome = result
            return .disarm
        }
        try loop.run(.untilDone)
    } catch {
        Report.fail(tool.name, "resolving \(host): \(error)")
    }
    switch outcome {
    case .success(let addresses)?:
        guard let first = addresses.first else { Report.fail(tool.name, "\(host) has no address") }
        Report.say("resolved \(host): \(addresses.map(\.description).joined(separator: ", "))")
        return first
    case .failure(let error)?:
        Report.fail(tool.name, "cannot resolve \(host): \(error)")
    case nil:
        Report.fail(tool.name, "resolving \(host) did not finish")
    }
}

/// Runs the load test with sockets of type `Socket` and returns what it measured.
@MainActor
func runLoad<Socket: ClientSocket>(_: Socket.Type) -> LoadClient<Socket> {
    let client = LoadClient<Socket>(loop: loop, address: address, connectTimeout: connectTimeout,
                                    connections: connections, size: size, duration: duration)
    do {
        try client.run()
    } catch {
        Report.fail(tool.name, "loop failed: \(error)")
    }
    return client
}

let report = unixPath == nil ? LoadReport(runLoad(TCPSocket.self)) : LoadReport(runLoad(UnixSocket.self))

let client = report
let h = client.histogram
let seconds = client.elapsedSeconds
let rate = seconds > 0 ? Double(client.roundtrips) / seconds : 0
let megabytes = seconds > 0 ? Double(client.roundtrips) * Double(size) / seconds / 1e6 : 0
Report.say("connected: \(client.connected) of \(connections)")
Report.say("roundtrips: \(client.roundtrips) in \(Report.fixed(seconds, 2)) s (\(Report.fixed(rate, 1)) roundtrips/s)")
Report.say("throughput: \(Report.fixed(megabytes, 2)) MB/s echoed (each direction)")
if h.count > 0 {
    Report.say("latency: p50 \(Report.duration(nanoseconds: h.percentile(50))), p90 \(Report.duration(nanoseconds: h.percentile(90))), p99 \(Report.duration(nanoseconds: h.percentile(99))), max \(Report.duration(nanoseconds: h.max)) (min \(Report.duration(nanoseconds: h.min)), mean \(Report.duration(nanoseconds: UInt64(h.mean))))")
}
Report.say("mismatches: \(client.mismatches)")
Report.say("errors: \(client.errorCount)")
for f in client.failures.prefix(10) {
    Report.warn("ev-echo-client: " + (f.connection >= 0 ? "connection \(f.connection): " : "") + f.message)
}
if client.errorCount > 10 { Report.warn("ev-echo-client: ... and \(client.errorCount - 10) more") }

if client.errorCount > 0 || client.mismatches > 0 || client.timedOut {
    exit(1)
}
if client.roundtrips == 0 {
    Report.fail(tool.name, "no roundtrip completed")
}
exit(0)
