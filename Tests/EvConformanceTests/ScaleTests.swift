// Conformance at scale: 10,000 concurrent timers and 1,000 concurrent loopback
// connections. Every test runs unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: scale")
struct ScaleTests {

    /// 10,000 timers pending at once (random 0–50 ms): each fires exactly once, never
    /// early, and in deadline order.
    @Test(.tags(.pitfallF6), arguments: conformanceBackends)
    func tenThousandConcurrentTimers(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        var rng = SeededRandom(seed: 10_000)
        let n = 10_000
        var fired = [Int](repeating: 0, count: n)
        var early = 0, failures = 0
        var lastDeadline = LoopInstant(nanoseconds: 0), outOfOrder = 0
        loop.updateNow()
        var timers: [Completion] = []
        timers.reserveCapacity(n)
        for i in 0..<n {
            let deadline = loop.now + .microseconds(Int64.random(in: 0...50_000, using: &rng))
            let c = Completion()
            try loop.timer(c, deadline: deadline) { _, r in
                fired[i] += 1
                if case .timer(.success) = r {} else { failures += 1 }
                if LoopInstant.now() < deadline { early += 1 }
                if deadline < lastDeadline { outOfOrder += 1 }
                lastDeadline = deadline
                return .disarm
            }
            timers.append(c)
        }
        #expect(loop.activeCount == n)
        #expect(try runUntilDone(loop, timeout: .seconds(20)))
        #expect(fired.allSatisfy { $0 == 1 }, "\(fired.filter { $0 != 1 }.count) timers fired other than once")
        #expect(early == 0)
        #expect(failures == 0)
        #expect(outOfOrder == 0)
        #expect(loop.activeCount == 0)
    }

    /// 1,000 concurrent loopback connections through one loop: every client connects,
    /// sends its number and reads it back from the server side, which accepts with a
    /// rearmed accept and echoes with a recv then a send on each connection.
    @Test(arguments: conformanceBackends)
    func thousandConcurrentConnections(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let n = 1000
        guard Fds.limit >= 2 * n + 256 else {
            let message = "EVLOOP TEST SKIPPED on \(backend): RLIMIT_NOFILE is \(Fds.limit), below \(2 * n + 256)\n"
            _ = Array(message.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            try Test.cancel(Comment(rawValue: message))
        }
        let (l, port) = try Sock.listener(backlog: Int32(n + 24))
        h.forLoop(l)
        let address = try Sock.loopback(ipv6: false, port: port)
        let width = 8
        let clientOut = h.buffer(n * width), clientIn = h.buffer(n * width), serverBuf = h.buffer(n * width)
        var errors: [String] = []
        var echoed = 0, served = 0, accepted = 0

        /// Moves a completion on to `op`, or records a failed step.
        func step(_ what: String, _ r: CompletionResult) -> Bool {
            if let e = r.error { if errors.count < 10 { errors.append("\(what): \(e)") }; return false }
            return true
        }

        // Server: one rearmed accept; per connection recv 8 bytes, then send them back.
        var serverCompletions: [Completion] = []
        serverCompletions.reserveCapacity(n)
        let acceptC = Completion(.accept(socket: l)) { _, r in
            guard case .accept(.success(let fd)) = r else { _ = step("accept", r); return .disarm }
            h.own(fd)
            Sock.setNonBlocking(fd, h.wantsNonBlocking)
            let slot = accepted
            accepted += 1
            let base = slot * width
            var got = 0
            let conn = Completion(.recv(socket: fd, buffer: UnsafeMutableRawBufferPointer(rebasing: serverBuf[base..<base + width])))
            conn.callback = { c, r in
                guard step("server", r), let count = r.count else { return .disarm }
                switch c.operation {
                case .recv:
                    got += count
                    if got < width {
                        c.operation = .recv(socket: fd, buffer: UnsafeMutableRawBufferPointer(rebasing: serverBuf[base + got..<base + width]))
                    } else {
                        got = 0
                        c.operation = .send(socket: fd, buffer: UnsafeRawBufferPointer(rebasing: serverBuf[base..<base + width]))
                    }
                    return .rearm
                case .send:
                    got += count
                    if got < width {
                        c.operation = .send(socket: fd, buffer: UnsafeRawBufferPointer(rebasing: serverBuf[base + got..<base + width]))
                        return .rearm
                    }
                    served += 1
                    return .disarm
                default:
                    return .disarm
                }
            }
            serverCompletions.append(conn)
            do { try loop.add(conn) } catch { errors.append("add: \(error)") }
            return accepted < n ? .rearm : .disarm
        }
        try loop.add(acceptC)

        // Clients: connect, send the 8-byte number, read it back.
        var clients: [Completion] = []
        for i in 0..<n {
            let fd = h.forLoop(try Sock.tcp())
            let base = i * width
            withUnsafeBytes(of: UInt64(i).bigEndian) { clientOut[base..<base + width].copyBytes(from: $0) }
            var done = 0
            let c = Completion(.connect(socket: fd, address: address)) { c, r in
                guard step("client \(i)", r) else { return .disarm }
                switch c.operation {
                case .connect:
                    c.operation = .send(socket: fd, buffer: UnsafeRawBufferPointer(rebasing: clientOut[base..<base + width]))
                case .send:
                    done += r.count ?? 0
                    if done < width {
                        c.operation = .send(socket: fd, buffer: UnsafeRawBufferPointer(rebasing: clientOut[base + done..<base + width]))
                    } else {
                        done = 0
                        c.operation = .recv(socket: fd, buffer: UnsafeMutableRawBufferPointer(rebasing: clientIn[base..<base + width]))
                    }
                case .recv:
                    done += r.count ?? 0
                    if done < width {
                        c.operation = .recv(socket: fd, buffer: UnsafeMutableRawBufferPointer(rebasing: clientIn[base + done..<base + width]))
                    } else {
                        echoed += 1
                        return .disarm
                    }
                default:
                    return .disarm
                }
                return .rearm
            }
            clients.append(c)
            try loop.add(c)
        }
        let start = LoopInstant.now()
        #expect(try runUntil(loop, timeout: .seconds(30)) { echoed == n && served == n || !errors.isEmpty })
        #expect(errors.isEmpty, "\(errors)")
        #expect(accepted == n && served == n && echoed == n, "accepted \(accepted), served \(served), echoed \(echoed)")
        #expect(memcmp(clientOut.baseAddress!, clientIn.baseAddress!, n * width) == 0, "every client got its own number back")
        print("[\(backend)] 1,000 connections echoed in \((LoopInstant.now() - start).milliseconds) ms")
    }
}
