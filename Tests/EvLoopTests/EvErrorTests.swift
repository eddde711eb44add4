#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import EvLoop

/// PITFALLS D9 and K2: one table maps errno values to named errors, and one function maps
/// a raw kernel-convention result to a typed result per operation; every backend goes
/// through both, so these tables are the backends' shared contract.
@Suite(.tags(.pitfallD9, .pitfallI1, .pitfallK2)) struct EvErrorTests {
    static let named: [(Int32, EvError)] = [
        (ECANCELED, .canceled), (ECONNREFUSED, .connectionRefused), (ECONNRESET, .connectionReset),
        (ECONNABORTED, .connectionAborted), (EPIPE, .brokenPipe), (EBADF, .badFileDescriptor),
        (ETIMEDOUT, .timedOut), (ETIME, .timedOut), (ENOTCONN, .notConnected),
        (EADDRINUSE, .addressInUse), (EADDRNOTAVAIL, .addressNotAvailable),
        (ENETUNREACH, .unreachable), (EHOSTUNREACH, .unreachable),
        (EACCES, .permissionDenied), (EPERM, .permissionDenied), (EINVAL, .invalidArgument),
        (EMFILE, .systemResources), (ENFILE, .systemResources), (ENOBUFS, .systemResources),
        (ENOMEM, .systemResources), (ENOENT, .noSuchFile), (ENAMETOOLONG, .nameTooLong), (EALREADY, .inProgress),
        (EvError.cancelOfCancelCode, .cannotCancelCancel),
        (EISDIR, .isDirectory), (ENOTDIR, .notDirectory), (EEXIST, .fileExists), (ENOTEMPTY, .directoryNotEmpty),
    ]

    @Test(arguments: named.map { ErrnoCase($0.0, $0.1) })
    func namedErrnoMapsToItsCase(_ c: ErrnoCase) {
        #expect(EvError(errno: c.code) == c.error)
    }

    @Test func otherErrnoValuesAreKept() {
        for code in [EIO, EAGAIN, EINTR, ENOSPC, EFAULT, EXDEV, 0, 4095, 100_000] {
            #expect(EvError(errno: code) == .errno(code))
            #expect(EvError.errno(code).errnoValue == code)
        }
    }

    @Test func errnoValueRoundTrips() {
        let all: [EvError] = [.canceled, .connectionRefused, .connectionReset, .connectionAborted, .brokenPipe,
                              .badFileDescriptor, .timedOut, .notConnected, .addressInUse, .addressNotAvailable,
                              .unreachable, .permissionDenied, .invalidArgument, .systemResources, .noSuchFile,
                              .nameTooLong, .inProgress, .isDirectory, .notDirectory, .fileExists,
                              .directoryNotEmpty]
        for e in all {
            #expect(e.errnoValue.map { EvError(errno: $0) } == e, "\(e)")
        }
        // `.notFound` shares ENOENT with `.noSuchFile`; only a cancel's result turns ENOENT
        // into it (see `cancelsAloneMapENOENTToNotFound`).
        #expect(EvError.notFound.errnoValue == ENOENT)
        for e in [EvError.endOfFile, .nestedRun, .completionActive, .cannotCancelCancel, .notifierInUse] {
            #expect(e.errnoValue == nil)
        }
    }

    @Test func descriptionsAreDistinct() {
        let all: [EvError] = [.canceled, .endOfFile, .connectionRefused, .connectionReset, .connectionAborted,
                              .brokenPipe, .badFileDescriptor, .timedOut, .notConnected, .addressInUse,
                              .addressNotAvailable, .unreachable, .permissionDenied, .invalidArgument,
                              .systemResources, .notFound, .noSuchFile, .nameTooLong, .inProgress, .nestedRun, .completionActive,
                              .cannotCancelCancel, .notifierInUse, .errno(EIO)]
        let texts = all.map(\.description)
        #expect(Set(texts).count == all.count)
        #expect(texts.allSatisfy { !$0.isEmpty })
        #expect(EvError.errno(EIO).description.contains("\(EIO)"))
    }

    // MARK: raw result → typed result

    /// ENOENT has two meanings and the operation decides which (issue 12): from a cancel it
    /// is "nothing to cancel" (`.notFound`); from every other operation it is a missing
    /// path (`.noSuchFile`: connecting to a Unix socket path that does not exist, a
    /// sendmsg to one). So a program never mistakes a missing socket for a lost cancel.
    @Test func cancelsAloneMapENOENTToNotFound() throws {
        let cancel = Completion(.cancel(target: Completion()))
        #expect(cancel.makeResult(raw: -Int(ENOENT)).error == .notFound)
        let address = try SocketAddress(unixPath: "/nonexistent/evloop.sock")
        #expect(Completion(.connect(socket: 3, address: address)).makeResult(raw: -Int(ENOENT)).error == .noSuchFile)
        withBuffer { buffer in
            let send = Completion(.sendmsg(socket: 3, buffer: UnsafeRawBufferPointer(buffer), address: address))
            #expect(send.makeResult(raw: -Int(ENOENT)).error == .noSuchFile)
        }
        #expect(Completion(.close(fd: 3)).makeResult(raw: -Int(ENAMETOOLONG)).error == .nameTooLong)
        #expect(EvError(errno: ENOENT) == .noSuchFile)
    }

    /// A 16-byte buffer for the duration of `body` (the mapping only looks at its size).
    private func withBuffer(_ body: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
        defer { b.deallocate() }
        try body(b)
    }

    @Test func readsDistinguishEndOfFileFromEmptyBuffers() {
        withBuffer { buffer in
            let b = buffer, e = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<0])
            for op in [Operation.read(fd: 3, buffer: b), .pread(fd: 3, buffer: b, offset: 9), .recv(socket: 3, buffer: b)] {
                let c = Completion(op)
                #expect(c.makeResult(raw: 0).error == .endOfFile, "0 bytes into a non-empty buffer: \(op.kind)")
                guard case .read(.success(5)) = c.makeResult(raw: 5) else { Issue.record("\(op.kind) 5"); continue }
                #expect(c.makeResult(raw: -Int(ECANCELED)).error == .canceled)
                #expect(c.makeResult(raw: -Int(ECONNRESET)).error == .connectionReset)
                #expect(c.makeResult(raw: -Int(EIO)).error == .errno(EIO), "unknown errno kept, never a crash")
            }
            for op in [Operation.read(fd: 3, buffer: e), .pread(fd: 3, buffer: e, offset: 0), .recv(socket: 3, buffer: e)] {
                guard case .read(.success(0)) = Completion(op).makeResult(raw: 0) else {
                    Issue.record("0 bytes into an empty buffer is success(0): \(op.kind)")
                    continue
                }
            }
        }
    }

    @Test func writesOfZeroAreNotEndOfFile() {
        withBuffer { buffer in
            let b = UnsafeRawBufferPointer(buffer)
            for op in [Operation.write(fd: 3, buffer: b), .pwrite(fd: 3, buffer: b, offset: 0), .send(socket: 3, buffer: b),
                       .sendmsg(socket: 3, buffer: b, address: nil)] {
                let c = Completion(op)
                guard case .write(.success(0)) = c.makeResult(raw: 0) else { Issue.record("\(op.kind) 0"); continue }
                guard case .write(.success(16)) = c.makeResult(raw: 16) else { Issue.record("\(op.kind) 16"); continue }
                #expect(c.makeResult(raw: -Int(EPIPE)).error == .brokenPipe)
                #expect(c.makeResult(raw: 16).count == 16)
            }
        }
    }

    @Test func timerCancelAndVoidOperations() {
        let timer = Completion(.timer(deadline: .distantFuture))
        guard case .timer(.success) = timer.makeResult(raw: 0) else { Issue.record("timer 0"); return }
        #expect(timer.makeResult(raw: -Int(ECANCELED)).error == .canceled)

        let cancel = Completion(.cancel(target: timer))
        guard case .cancel(.success) = cancel.makeResult(raw: 0) else { Issue.record("cancel 0"); return }
        #expect(cancel.makeResult(raw: -Int(ENOENT)).error == .notFound)
        #expect(cancel.makeResult(raw: -Int(EALREADY)).error == .inProgress)
        #expect(cancel.makeResult(raw: -Int(EvError.cancelOfCancelCode)).error == .cannotCancelCancel)

        let address = try? SocketAddress(ipv4: "127.0.0.1", port: 1)
        for op in [Operation.connect(socket: 3, address: address!), .shutdown(socket: 3, how: .both), .close(fd: 3)] {
            let c = Completion(op)
            #expect(c.makeResult(raw: 0).error == nil, "\(op.kind)")
            #expect(c.makeResult(raw: 0).count == nil)
        }
        #expect(Completion(.connect(socket: 3, address: address!)).makeResult(raw: -Int(ECONNREFUSED)).error == .connectionRefused)
        #expect(Completion(.shutdown(socket: 3, how: .read)).makeResult(raw: -Int(ENOTCONN)).error == .notConnected)
        #expect(Completion(.close(fd: 3)).makeResult(raw: -Int(EBADF)).error == .badFileDescriptor)
        guard case .nop = Completion(.nop).makeResult(raw: 0) else { Issue.record("nop"); return }
    }

    @Test func acceptAndPollResults() {
        let accept = Completion(.accept(socket: 3))
        guard case .accept(.success(42)) = accept.makeResult(raw: 42) else { Issue.record("accept 42"); return }
        #expect(accept.makeResult(raw: 42).count == 42)
        #expect(accept.makeResult(raw: -Int(EMFILE)).error == .systemResources)
        #expect(accept.makeResult(raw: -Int(ECONNABORTED)).error == .connectionAborted)

        let poll = Completion(.poll(fd: 3, events: [.readable, .writable]))
        let raw = Int(POLLIN) | Int(POLLHUP)
        guard case .poll(.success(let events)) = poll.makeResult(raw: raw) else { Issue.record("poll"); return }
        #expect(events == [.readable, .hangup])
        #expect(poll.makeResult(raw: -Int(EBADF)).error == .badFileDescriptor)
    }

    @Test func recvmsgReportsSenderTruncationAndEndOfStream() throws {
        try withBuffer { buffer in
            let c = Completion(.recvmsg(socket: 3, buffer: buffer))
            let sender = try SocketAddress(ipv4: "127.0.0.1", port: 5353)
            // A datagram larger than the buffer: the kernel sets MSG_TRUNC and the sender.
            CompletionScratch.prepareMessage(for: c)
            c.scratch!.pointee.address = sender.storage
            c.scratch!.pointee.message.msg_namelen = sender.length
            c.scratch!.pointee.message.msg_flags = Int32(MSG_TRUNC)
            guard case .recvmsg(.success(let m)) = c.makeResult(raw: 16) else { Issue.record("truncated"); return }
            #expect(m == ReceivedMessageSize(count: 16, truncated: true))
            #expect(c.lastAddress == sender)

            // An empty datagram has a sender: a 0-byte message, not an end of file.
            c.scratch!.pointee.message.msg_flags = 0
            guard case .recvmsg(.success(let e)) = c.makeResult(raw: 0) else { Issue.record("empty datagram"); return }
            #expect(e == ReceivedMessageSize(count: 0, truncated: false) && c.lastAddress == sender)

            // A connected stream socket at its end: no address, 0 bytes → end of file.
            c.scratch!.pointee.message.msg_namelen = 0
            #expect(c.makeResult(raw: 0).error == .endOfFile)
            #expect(c.makeResult(raw: -Int(ECONNRESET)).error == .connectionReset)
        }
    }

    @Test func prepareFillsTheMessageForSendmsgAndRecvmsg() throws {
        try withBuffer { buffer in
            let dest = try SocketAddress(ipv6: "::1", port: 9)
            let send = Completion(.sendmsg(socket: 3, buffer: UnsafeRawBufferPointer(buffer), address: dest))
            CompletionScratch.prepareMessage(for: send)
            let m = send.scratch!.pointee.message
            #expect(m.msg_iovlen == 1 && m.msg_iov?.pointee.iov_len == 16)
            #expect(m.msg_iov?.pointee.iov_base == UnsafeMutableRawPointer(buffer.baseAddress))
            #expect(m.msg_namelen == dest.length && m.msg_name != nil)
            #expect(SocketAddress(storage: send.scratch!.pointee.address, length: m.msg_namelen) == dest)

            let connected = Completion(.sendmsg(socket: 3, buffer: UnsafeRawBufferPointer(buffer), address: nil))
            CompletionScratch.prepareMessage(for: connected)
            #expect(connected.scratch!.pointee.message.msg_name == nil && connected.scratch!.pointee.message.msg_namelen == 0)

            let recv = Completion(.recvmsg(socket: 3, buffer: buffer))
            CompletionScratch.prepareMessage(for: recv)
            #expect(Int(recv.scratch!.pointee.message.msg_namelen) == MemoryLayout<sockaddr_storage>.size)
        }
    }
}

/// One row of the errno table (a named type so Swift Testing can show it per case).
struct ErrnoCase: Sendable, CustomTestStringConvertible {
    var code: Int32
    var error: EvError
    init(_ code: Int32, _ error: EvError) { self.code = code; self.error = error }
    var testDescription: String { "errno \(code) → \(error)" }
}
