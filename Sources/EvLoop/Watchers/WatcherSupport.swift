#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

// Shared plumbing of the watchers: typed views of `CompletionResult`, the one way a
// watcher starts an operation (`Completion.start`), and the socket calls (creation,
// options, bind, listen) that the socket watchers have in common.
//
// Watchers are thin: each one fills a caller-owned `Completion` with an `Operation` and a
// callback that turns the loop's `CompletionResult` into the watcher's typed result. They
// are written against `EventLoop` only, so the same code runs on `UringLoop`, `EpollLoop`,
// `PollLoop` and on the `LoopCore` that `makeLoop` returns at runtime.
//
// Allocation: a watcher call that takes a typed callback wraps it in one closure (one
// small allocation per call). `.rearm` repeats the operation without calling the watcher
// again, so a rearmed read, accept or timer allocates nothing; code that must not allocate
// when it switches operations can set `Completion.operation` and `Completion.callback`
// itself, with callbacks it made once.

extension CompletionResult {
    /// A count of bytes (read, recv, pread, write, send, sendmsg).
    @inline(__always)
    var countResult: Result<Int, EvError> {
        switch self {
        case .read(let r), .write(let r): return r
        default: return .failure(mismatch)
        }
    }

    /// Success or failure without a value (timer, connect, shutdown, close, cancel).
    @inline(__always)
    var voidResult: Result<Void, EvError> {
        switch self {
        case .timer(let r), .connect(let r), .shutdown(let r), .close(let r), .cancel(let r): return r
        case .nop: return .success(())
        default: return .failure(mismatch)
        }
    }

    /// The error a watcher reports when the completion produced a result of another kind
    /// than the watcher configured: the caller changed `Completion.operation` while it was
    /// in flight. Reported as a value (never a crash), like every other error.
    private var mismatch: EvError { .invalidArgument }

    /// A file-system operation without a value (fsync, fallocate, truncate, rename,
    /// unlink, mkdir).
    @inline(__always)
    var fileSystemResult: Result<Void, EvError> {
        if case .fileSystem(let r) = self { return r }
        return .failure(mismatch)
    }

    /// An opened file.
    @inline(__always)
    var openResult: Result<File, EvError> {
        if case .open(let r) = self { return r.map(File.init(fd:)) }
        return .failure(mismatch)
    }

    /// A file's status, which `completion` keeps (see `Completion.fileStatus`).
    @inline(__always)
    package func status(of completion: Completion) -> Result<FileStatus, EvError> {
        guard case .stat(let r) = self else { return .failure(mismatch) }
        return r.map { completion.fileStatus }
    }

    /// A received message (recvmsg), with the sender `completion` keeps.
    @inline(__always)
    package func message(of completion: Completion) -> Result<ReceivedMessage, EvError> {
        guard case .recvmsg(let r) = self else { return .failure(mismatch) }
        return r.map { ReceivedMessage(count: $0.count, address: completion.lastAddress, truncated: $0.truncated) }
    }
}

extension Completion {
    /// Configures this completion with `operation` and a callback that hands `callback`
    /// the result as `view` types it (`countResult`, `voidResult`, `message(of:)`), then
    /// adds it to `loop`: the body of every watcher operation.
    @inline(__always)
    func start<Value>(_ operation: Operation, on loop: some EventLoop,
                      viewing view: @escaping (Completion, CompletionResult) -> Result<Value, EvError>,
                      callback: @escaping (Completion, Result<Value, EvError>) -> CallbackAction) throws(EvError) {
        // Refused before anything is stored: an active completion's fields are the loop's
        // (and the kernel's) until its callback runs, so a watcher call with a completion
        // still in flight must not rewrite them on its way to `add`'s refusal.
        guard state == .dead else { throw .completionActive }
        self.operation = operation
        self.callback = { c, result in callback(c, view(c, result)) }
        try loop.add(self)
    }
}

/// Socket set-up shared by `TCPSocket`, `UDPSocket` and `UnixSocket`: synchronous system calls that
/// never block (socket, setsockopt, bind, listen, getsockname), so they are not loop
/// operations.
package enum SocketCalls {
    /// socket(2) for `family`, always close-on-exec (a descriptor that leaks into a child
    /// process keeps a connection open after we close it, PITFALLS B12/H4), and
    /// non-blocking unless `blocking` (io_uring waits inside the kernel and prefers blocking
    /// sockets, PITFALLS D7; readiness loops need O_NONBLOCK).
    package static func open(family: Int32, type: Int32, blocking: Bool) throws(EvError) -> Int32 {
        var flags = type | Int32(SOCK_CLOEXEC.rawValue)
        if !blocking { flags |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = socket(family, flags, 0)
        guard fd >= 0 else { throw EvError(errno: cevsys_errno()) }
        return fd
    }

    package static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32) throws(EvError) {
        var v = value
        guard setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw EvError(errno: cevsys_errno())
        }
    }

    package static func getOption(_ fd: Int32, level: Int32, name: Int32) throws(EvError) -> Int32 {
        var v: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, level, name, &v, &len) == 0 else { throw EvError(errno: cevsys_errno()) }
        return v
    }

    package static func bind(_ fd: Int32, to address: SocketAddress) throws(EvError) {
        let r = address.withSockAddr { Glibc.bind(fd, $0, $1) }
        guard r == 0 else { throw EvError(errno: cevsys_errno()) }
    }

    package static func listen(_ fd: Int32, backlog: Int32) throws(EvError) {
        guard Glibc.listen(fd, backlog) == 0 else { throw EvError(errno: cevsys_errno()) }
    }

    /// getsockname(2) or getpeername(2).
    package static func address(_ fd: Int32, peer: Bool) throws(EvError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length)
            }
        }
        guard r == 0 else { throw EvError(errno: cevsys_errno()) }
        return SocketAddress(storage: storage, length: length)
    }

    /// socketpair(2) of AF_UNIX sockets of `type`, both ends close-on-exec and, unless
    /// `blocking`, non-blocking (see `open`).
    package static func pair(type: Int32, blocking: Bool) throws(EvError) -> (Int32, Int32) {
        var flags = type | Int32(SOCK_CLOEXEC.rawValue)
        if !blocking { flags |= Int32(SOCK_NONBLOCK.rawValue) }
        var fds: (Int32, Int32) = (-1, -1)
        let r = withUnsafeMutableBytes(of: &fds) {
            socketpair(AF_UNIX, flags, 0, $0.baseAddress!.assumingMemoryBound(to: Int32.self))
        }
        guard r == 0 else { throw EvError(errno: cevsys_errno()) }
        return fds
    }

    /// Puts a descriptor made elsewhere into the mode `loop` prefers (fcntl O_NONBLOCK).
    package static func setBlocking(_ fd: Int32, _ blocking: Bool) throws(EvError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { throw EvError(errno: cevsys_errno()) }
        let wanted = blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK
        if wanted != flags {
            guard fcntl(fd, F_SETFL, wanted) == 0 else { throw EvError(errno: cevsys_errno()) }
        }
    }
}
