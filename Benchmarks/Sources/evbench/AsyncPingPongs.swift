#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import BenchSupport

/// The ping-pong of `PingPongs`, written with async/await (EvAsync): both sides are tasks
/// on their loop's `LoopExecutor`, and every send, receive, accept and connect is an
/// awaited `executor.perform(...)`, resumed on the loop thread by the completion's
/// callback. Four awaited operations per roundtrip (client send + receive, server receive +
/// send). Same figure as ping-pongs (roundtrips/s), so the two compare directly.
enum AsyncPingPongs {
    static func run(_ setup: BenchSetup, count: Int, warmup: Int) {
        let port = Handoff<UInt16>()
        let serverThread = BenchThread {
            let loop = setup.openLoop()
            let executor = check("executor") { try LoopExecutor(loop) }
            let listener = check("listen") { () throws(EvError) -> TCPSocket in
                let s = try TCPSocket(family: AF_INET, loop: loop)
                try s.setReuseAddress(true)
                try s.bind(to: loopbackAnyPort())
                try s.listen(backlog: 128)
                return s
            }
            port.put(check("getsockname") { try listener.localAddress().port })
            check("server") { try executor.run { try await serveEcho(executor, listener: listener.fd) } }
            executor.shutdown()
            drain(loop)
        }

        let loop = setup.openLoop()
        let executor = check("executor") { try LoopExecutor(loop) }
        let socket = check("socket") { try TCPSocket(family: AF_INET, loop: loop) }
        let address = check("address") { try SocketAddress(ipv4: "127.0.0.1", port: port.take()) }
        let (start, end) = check("client") {
            try executor.run {
                try await ping(executor, socket: socket.fd, address: address, warmup: warmup, count: count)
            }
        }
        serverThread.join()
        executor.shutdown()
        drain(loop)
        let window = Window(from: start, to: end, operations: UInt64(count))
        var extra: [(String, String)] = [("awaits_per_roundtrip", "4")]
        if let a = window.allocationsPerOperation {
            extra.append(("allocs_per_await", BenchOutput.fixed(a / 4, 6)))
        }
        BenchOutput.result(bench: "ping-pongs-async", impl: setup.implementation, value: window.rate,
                           unit: "roundtrips/s", window: window, opName: "roundtrip", extra: extra)
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Accepts one connection and echoes it until end of stream.
    static func serveEcho(_ executor: LoopExecutor, listener: Int32) async throws {
        guard case .accept(.success(let fd)) = try await executor.perform(.accept(socket: listener)) else {
            throw Failure(description: "accept failed")
        }
        _ = try await executor.perform(.close(fd: listener))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            guard case .read(.success(let n)) = try await executor.perform(.recv(socket: fd, buffer: buffer)) else {
                break   // end of stream
            }
            var offset = 0
            while offset < n {
                let sent = try await executor.perform(
                    .send(socket: fd, buffer: UnsafeRawBufferPointer(rebasing: buffer[offset..<n])))
                guard case .write(.success(let k)) = sent else { throw Failure(description: "send: \(sent)") }
                offset += k
            }
        }
        _ = try await executor.perform(.close(fd: fd))
    }

    /// Connects, then pings until `warmup + count` echoes; returns the window's samples.
    static func ping(_ executor: LoopExecutor, socket fd: Int32, address: SocketAddress,
                     warmup: Int, count: Int) async throws -> (Sample, Sample) {
        let connected = try await executor.perform(.connect(socket: fd, address: address))
        guard case .connect(.success) = connected else { throw Failure(description: "connect: \(connected)") }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 64)
        defer { buffer.deallocate() }
        var parser = PingParser()
        var pongs = 0
        var start = Sample.now()
        while true {
            var offset = 0
            while offset < Ping.bytes.count {
                let sent = try await executor.perform(
                    .send(socket: fd, buffer: UnsafeRawBufferPointer(rebasing: Ping.bytes[offset...])))
                guard case .write(.success(let k)) = sent else { throw Failure(description: "send: \(sent)") }
                offset += k
            }
            var echoes = 0
            while echoes == 0 {
                let r = try await executor.perform(.recv(socket: fd, buffer: buffer))
                guard case .read(.success(let n)) = r else {
                    throw Failure(description: "receive after \(pongs) roundtrips: \(r)")
                }
                echoes = parser.feed(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
            }
            pongs += echoes
            if pongs == warmup { start = Sample.now() }
            if pongs >= warmup + count { break }
        }
        let end = Sample.now()
        _ = try await executor.perform(.shutdown(socket: fd, how: .write))
        _ = try await executor.perform(.close(fd: fd))
        return (start, end)
    }
}
