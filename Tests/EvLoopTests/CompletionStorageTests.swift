import Testing
@testable import EvLoop

/// The completion keeps its operation taken apart (kind, descriptor, buffer, count, one
/// argument; a cancel's target retained in the buffer field): what goes in comes back out,
/// and a cancel's target lives exactly as long as the cancel names it.
@Suite struct CompletionStorageTests {
    @Test func aCancelKeepsItsTargetAliveUntilReconfiguredOrReleased() {
        weak var target: Completion?
        var cancel: Completion? = nil
        do {
            let t = Completion()
            target = t
            cancel = Completion(.cancel(target: t))
        }
        #expect(target != nil, "the cancel holds its target")
        #expect(cancel?.cancelTarget === target)
        cancel?.operation = .nop
        #expect(target == nil, "reconfiguring the cancel lets its target go")

        do {
            let t = Completion()
            target = t
            cancel?.operation = .cancel(target: t)
        }
        #expect(target != nil)
        cancel = nil
        #expect(target == nil, "releasing the cancel releases its target")
    }

    @Test func operationsRoundTrip() throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { buffer.deallocate() }
        let address = try SocketAddress(ipv4: "127.0.0.1", port: 4242)
        let other = Completion()
        let ops: [Operation] = [
            .nop, .timer(deadline: LoopInstant(nanoseconds: 123)), .cancel(target: other),
            .accept(socket: 3), .connect(socket: 4, address: address),
            .read(fd: 5, buffer: buffer), .write(fd: 6, buffer: UnsafeRawBufferPointer(buffer)),
            .pread(fd: 7, buffer: buffer, offset: 99), .pwrite(fd: 8, buffer: UnsafeRawBufferPointer(buffer), offset: 98),
            .recv(socket: 9, buffer: buffer), .send(socket: 10, buffer: UnsafeRawBufferPointer(buffer)),
            .recvmsg(socket: 11, buffer: buffer),
            .sendmsg(socket: 12, buffer: UnsafeRawBufferPointer(buffer), address: address),
            .sendmsg(socket: 13, buffer: UnsafeRawBufferPointer(buffer), address: nil),
            .shutdown(socket: 14, how: .write), .close(fd: 15), .poll(fd: 16, events: [.readable, .writable]),
        ]
        let c = Completion()
        for op in ops {
            c.operation = op
            #expect(describe(c.operation) == describe(op))
            #expect(c.kind == op.kind)
            #expect(c.fd == (op.fd ?? -1))
        }
    }

    /// A comparable rendering of an operation (Operation is not Equatable: it holds a
    /// Completion and raw pointers).
    private func describe(_ op: Operation) -> String {
        switch op {
        case .cancel(let t): return "cancel \(ObjectIdentifier(t))"
        case .connect(let fd, let a): return "connect \(fd) \(a.storage.ss_family) \(a.length) \(a.port)"
        case .sendmsg(let fd, let b, let a): return "sendmsg \(fd) \(b.baseAddress.debugDescription) \(b.count) \(a.map { "\($0.port)" } ?? "none")"
        default: return String(describing: op)
        }
    }
}
