// Conformance: UDP datagrams with sendmsg/recvmsg (PITFALLS I3). Every test runs
// unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: UDP")
struct UDPConformanceTests {

    /// Receives one datagram on `fd` through the loop.
    private func receive(_ h: Harness, on fd: Int32, capacity: Int,
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> (ReceivedMessage?, [UInt8]) {
        let buf = h.buffer(capacity)
        var result: CompletionResult?
        let c = Completion(.recvmsg(socket: fd, buffer: buf)) { _, r in result = r; return .disarm }
        try h.loop.add(c)
        #expect(try runUntil(h.loop) { result != nil }, sourceLocation: sourceLocation)
        guard case .recvmsg(.success(let size))? = result else {
            Issue.record("recvmsg: \(String(describing: result))", sourceLocation: sourceLocation)
            return (nil, [])
        }
        // The sender stays in the completion (CompletionResult carries only the size).
        let m = ReceivedMessage(count: size.count, address: c.lastAddress, truncated: size.truncated)
        return (m, Array(buf[0..<min(m.count, capacity)]))
    }

    /// Sends one datagram from `fd` through the loop.
    private func send(_ h: Harness, from fd: Int32, _ bytes: [UInt8], to address: SocketAddress?,
                      sourceLocation: SourceLocation = #_sourceLocation) throws {
        let buf = h.buffer(bytes)
        var result: CompletionResult?
        try h.loop.add(Completion(.sendmsg(socket: fd, buffer: UnsafeRawBufferPointer(buf), address: address)) { _, r in
            result = r
            return .disarm
        })
        #expect(try runUntil(h.loop) { result != nil }, sourceLocation: sourceLocation)
        #expect(result?.count == bytes.count, "sendmsg: \(String(describing: result))", sourceLocation: sourceLocation)
    }

    /// sendmsg to an address and recvmsg with the sender's address, both ways, over IPv4
    /// and (when available) IPv6; a connected socket sends with no address; an empty
    /// datagram is a 0-byte message, not an end of file.
    @Test(.tags(.pitfallI3), arguments: conformanceBackends)
    func sendmsgAndRecvmsgCarryAddresses(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        for ipv6 in Sock.hasIPv6Loopback ? [false, true] : [false] {
            let (x, ax) = try Sock.udp(ipv6: ipv6)
            let (y, ay) = try Sock.udp(ipv6: ipv6)
            h.forLoop(x); h.forLoop(y)

            // The receive is pending before the datagram is sent.
            let buf = h.buffer(64)
            var pending: CompletionResult?
            let receiving = Completion(.recvmsg(socket: y, buffer: buf)) { _, r in pending = r; return .disarm }
            try loop.add(receiving)
            try loop.run(.noWait)
            #expect(pending == nil)
            try send(h, from: x, Array("ping".utf8), to: ay)
            #expect(try runUntil(loop) { pending != nil })
            guard case .recvmsg(.success(let m))? = pending else {
                Issue.record("recvmsg: \(String(describing: pending))")
                continue
            }
            #expect(m.count == 4 && !m.truncated)
            #expect(Array(buf[0..<4]) == Array("ping".utf8))
            let sender = receiving.lastAddress
            #expect(sender == ax, "sender \(sender), expected \(ax)")
            #expect(sender.family == (ipv6 ? AF_INET6 : AF_INET))

            // Reply to the address we were given.
            try send(h, from: y, Array("pong".utf8), to: sender)
            let (reply, bytes) = try receive(h, on: x, capacity: 64)
            #expect(bytes == Array("pong".utf8))
            #expect(reply?.address == ay)

            // A connected socket sends without an address; an empty datagram arrives as 0 bytes.
            let connected = ax.withSockAddr { connect(y, $0, $1) }
            #expect(connected == 0)
            try send(h, from: y, [], to: nil)
            let (empty, _) = try receive(h, on: x, capacity: 64)
            #expect(empty?.count == 0 && empty?.truncated == false)
            #expect(empty?.address == ay)
            try send(h, from: y, Array("after empty".utf8), to: nil)
            #expect(try receive(h, on: x, capacity: 64).1 == Array("after empty".utf8))
        }
    }

    /// PITFALLS I3: a 2 KiB datagram into a 1 KiB buffer is reported as truncated with
    /// the first 1 KiB delivered; the rest is discarded and the next datagram is intact.
    @Test(.tags(.pitfallI3), arguments: conformanceBackends)
    func oversizedDatagramIsReportedTruncated(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (x, _) = try Sock.udp()
        let (y, ay) = try Sock.udp()
        h.forLoop(x); h.forLoop(y)
        let big = (0..<2048).map { patternByte($0, seed: 5) }
        try send(h, from: x, big, to: ay)
        let (m, bytes) = try receive(h, on: y, capacity: 1024)
        #expect(m?.truncated == true)
        #expect(m?.count == 1024)
        #expect(bytes == Array(big[0..<1024]))
        try send(h, from: x, Array("next".utf8), to: ay)
        let (m2, bytes2) = try receive(h, on: y, capacity: 1024)
        #expect(m2?.truncated == false && bytes2 == Array("next".utf8))

        // Plain recv on a datagram socket works too (the tail is discarded silently).
        try send(h, from: x, big, to: ay)
        let rb = h.buffer(512)
        var r: CompletionResult?
        try loop.add(Completion(.recv(socket: y, buffer: rb)) { _, res in r = res; return .disarm })
        #expect(try runUntil(loop) { r != nil })
        #expect(r?.count == 512)
        #expect(Array(rb) == Array(big[0..<512]))
    }

    /// A sender that rearms its send as fast as it completes and a receiver that rearms
    /// its receive, on one loop: every datagram sent is received. A loop that ran the
    /// rearmed send on every tick but looked at readiness (and so received) only on every
    /// other one overflowed the receiver's buffer and dropped about half (issue 11:
    /// udp_pummel on epoll and poll).
    @Test(arguments: conformanceBackends)
    func rearmedSenderDoesNotOutrunItsReceiver(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (x, _) = try Sock.udp(ipv6: false)
        let (y, ay) = try Sock.udp(ipv6: false)
        h.forLoop(x); h.forLoop(y)
        let total = 20_000
        let payload = h.buffer(Array(repeating: UInt8(7), count: 45))
        let inbox = h.buffer(2048)
        var sent = 0, received = 0, failures: [String] = []
        let sender = Completion(.sendmsg(socket: x, buffer: UnsafeRawBufferPointer(payload), address: ay)) { _, r in
            guard r.count == 45 else { failures.append("send: \(r)"); return .disarm }
            sent += 1
            return sent < total ? .rearm : .disarm
        }
        let receiver = Completion(.recvmsg(socket: y, buffer: inbox)) { _, r in
            guard r.count == 45 else { failures.append("receive: \(r)"); return .disarm }
            received += 1
            return received < total ? .rearm : .disarm
        }
        try loop.add(receiver)
        try loop.add(sender)
        // Every datagram arrives, so the receive ends by itself; a dropped one would leave
        // it waiting until the time bound.
        #expect(try runUntil(loop, timeout: .seconds(20)) { received == total || !failures.isEmpty })
        #expect(failures.isEmpty, "\(failures.prefix(3))")
        #expect(sent == total)
        #expect(received == total, "received \(received) of \(sent) datagrams")
        if receiver.state == .active { try loop.cancel(receiver, using: Completion()) }
    }

}
