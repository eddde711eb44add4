#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a finished operation produced, typed per operation kind.
///
/// Backends hand the loop a raw result in the kernel's convention (a count or descriptor,
/// or `-errno`); `Completion.makeResult(raw:)` turns it into this value in one place, so a
/// read of 0 bytes means `.endOfFile` (or 0 for an empty buffer) identically on io_uring,
/// epoll and poll.
///
/// Why no case carries more than a few words, and none a reference: every watcher's
/// callback and every caller's `switch` copies the value it matches on. When `.recvmsg`
/// carried the sender's `SocketAddress` and `.stat` a `FileStatus` by value, and `.work` an
/// existential, the enum was 143 bytes and address-only: each match was a value-witness
/// copy and destroy (about 270 instructions per async ping-pong roundtrip and 400 per TCP
/// ping-pong roundtrip, callgrind, December 2026). Boxing the two large payloads
/// (`indirect`) kept it small but not trivial: a box is a reference, so every callback still
/// released its result through an outlined consume, and a copy retained it. Now the large
/// payloads stay where they were produced, as a datagram's sender does: a `.stat`'s status
/// in the completion (`Completion.fileStatus`), a `.work` job's value in its job (taken by
/// `WorkPool.run`'s callback in the closure's own type), and the enum is plain data, two
/// words, copied as such.
public enum CompletionResult: Sendable {
    case nop
    /// `.success` when the deadline passed; `.failure(.canceled)` when cancelled.
    case timer(Result<Void, EvError>)
    /// `.success` when the target was cancelled; `.notFound` or `.inProgress` when it
    /// could not be (the target then reports its real result).
    case cancel(Result<Void, EvError>)
    /// The accepted descriptor, which the callback now owns.
    case accept(Result<Int32, EvError>)
    case connect(Result<Void, EvError>)
    /// Bytes read (read, pread, recv).
    case read(Result<Int, EvError>)
    /// Bytes written (write, pwrite, send, sendmsg); may be short.
    case write(Result<Int, EvError>)
    /// Bytes received and whether the datagram was cut off; the sender is the completion's
    /// `lastAddress` until it is added again.
    case recvmsg(Result<ReceivedMessageSize, EvError>)
    case shutdown(Result<Void, EvError>)
    case close(Result<Void, EvError>)
    /// The events that are ready.
    case poll(Result<PollEvents, EvError>)
    /// A `WorkPool` job: `.success` when its closure returned (the value waits in the job,
    /// and `WorkPool.run` hands it to its callback in the closure's own type), or the
    /// `EvError` it threw; `.failure(.canceled)` when it was cancelled before it started (or
    /// abandoned, for the resolver's jobs) or its pool was shut down first.
    case work(Result<Void, EvError>)
    /// `.open`: the new descriptor (close-on-exec), which the callback now owns.
    case open(Result<Int32, EvError>)
    /// `.stat` and `.statDescriptor`: `.success` when statx answered; what it reported is
    /// the completion's `fileStatus` until it is added again (`File.stat` and
    /// `FileSystem.stat` hand it to their callbacks).
    case stat(Result<Void, EvError>)
    /// fsync, fallocate, truncate, rename, unlink, mkdir.
    case fileSystem(Result<Void, EvError>)

    /// The error, if the operation failed.
    public var error: EvError? {
        switch self {
        case .nop: return nil
        case .timer(let r), .cancel(let r), .connect(let r), .shutdown(let r), .close(let r), .fileSystem(let r):
            if case .failure(let e) = r { return e }
        case .accept(let r): if case .failure(let e) = r { return e }
        case .read(let r), .write(let r): if case .failure(let e) = r { return e }
        case .recvmsg(let r): if case .failure(let e) = r { return e }
        case .poll(let r): if case .failure(let e) = r { return e }
        case .work(let r): if case .failure(let e) = r { return e }
        case .open(let r): if case .failure(let e) = r { return e }
        case .stat(let r): if case .failure(let e) = r { return e }
        }
        return nil
    }

    /// The count of bytes (read/write/recvmsg) or the descriptor (accept), if that is what
    /// the operation produced.
    public var count: Int? {
        switch self {
        case .read(.success(let n)), .write(.success(let n)): return n
        case .recvmsg(.success(let m)): return m.count
        case .accept(.success(let fd)): return Int(fd)
        default: return nil
        }
    }
}

/// What a `.recvmsg` operation reports: the bytes stored and whether the datagram was
/// truncated. The sender is read from the completion (`Completion.lastAddress`), so that the
/// result stays two words (see `CompletionResult`).
public struct ReceivedMessageSize: Sendable, Equatable {
    /// Bytes stored in the buffer.
    public var count: Int
    /// The datagram was larger than the buffer and its tail was discarded (MSG_TRUNC).
    public var truncated: Bool

    public init(count: Int, truncated: Bool) {
        self.count = count
        self.truncated = truncated
    }
}

/// A datagram (or stream chunk) received with `recvmsg`, with its sender: what the
/// datagram watchers' `receive` hands its callback.
public struct ReceivedMessage: Sendable {
    /// Bytes stored in the buffer.
    public var count: Int
    /// The sender's address (unset, `length == 0`, for connected stream sockets).
    public var address: SocketAddress
    /// The datagram was larger than the buffer and its tail was discarded (MSG_TRUNC).
    public var truncated: Bool

    public init(count: Int, address: SocketAddress, truncated: Bool) {
        self.count = count
        self.address = address
        self.truncated = truncated
    }
}

extension Completion {
    /// Turns a raw kernel-convention result for this completion's operation into its
    /// typed `CompletionResult`.
    // Inlined into the dispatch loop, so the result is built where the callback reads it:
    // CompletionResult is about 150 bytes (a received datagram's address), and returned
    // from a call it was copied with memcpy on every operation.
    @inline(__always)
    package func makeResult(raw: Int) -> CompletionResult {
        @inline(__always) func err() -> EvError { EvError(errno: Int32(truncatingIfNeeded: -raw)) }
        switch kind {
        case .nop:
            return .nop
        case .timer:
            return raw < 0 ? .timer(.failure(err())) : .timer(.success(()))
        case .cancel:
            // The one place ENOENT means "nothing to cancel" (every backend and the core
            // report a cancel that found no target as -ENOENT); from any other operation
            // it is a missing path, `.noSuchFile` (EvError(errno:)).
            if raw == -Int(ENOENT) { return .cancel(.failure(.notFound)) }
            return raw < 0 ? .cancel(.failure(err())) : .cancel(.success(()))
        case .accept:
            return raw < 0 ? .accept(.failure(err())) : .accept(.success(Int32(truncatingIfNeeded: raw)))
        case .connect:
            return raw < 0 ? .connect(.failure(err())) : .connect(.success(()))
        case .read, .pread, .recv:
            if raw < 0 { return .read(.failure(err())) }
            if raw == 0 && bufferCount > 0 { return .read(.failure(.endOfFile)) }
            return .read(.success(raw))
        case .write, .pwrite, .send, .sendmsg:
            return raw < 0 ? .write(.failure(err())) : .write(.success(raw))
        case .recvmsg:
            if raw < 0 { return .recvmsg(.failure(err())) }
            let s = scratch!
            let truncated = (s.pointee.message.msg_flags & Int32(MSG_TRUNC)) != 0
            if raw == 0 && bufferCount > 0 && s.pointee.message.msg_namelen == 0 && !truncated
                && !Syscalls.isDatagramSocket(fd) {
                // A connected stream socket at end of stream. (An empty UDP datagram has
                // a sender address; an empty Unix datagram from a sender that never bound
                // a name has none, so the socket's type tells, asked only on this path.)
                return .recvmsg(.failure(.endOfFile))
            }
            return .recvmsg(.success(ReceivedMessageSize(count: raw, truncated: truncated)))
        case .shutdown:
            return raw < 0 ? .shutdown(.failure(err())) : .shutdown(.success(()))
        case .close:
            return raw < 0 ? .close(.failure(err())) : .close(.success(()))
        case .poll:
            return raw < 0 ? .poll(.failure(err())) : .poll(.success(PollEvents(rawValue: UInt32(truncatingIfNeeded: raw))))
        case .work:
            return .work(workOutcome(raw: raw))
        case .open, .stat, .fsync, .fallocate, .truncate, .rename, .unlink, .mkdir:
            return fileSystemResult(raw: raw)
        }
    }

    /// A `.work` completion's result: whether the job's closure returned (its value stays
    /// in the job for `takeWorkValue`) or threw, or the loop's own error (`raw < 0`:
    /// withdrawn before it started). Out of line, so the dispatch loop that inlines
    /// `makeResult` does not grow for it.
    @inline(never)
    package func workOutcome(raw: Int) -> Result<Void, EvError> {
        if raw < 0 { return .failure(EvError(errno: Int32(truncatingIfNeeded: -raw))) }
        // Only a job whose delivery was forged (a completion whose operation was replaced
        // while in flight) can have no job or no outcome.
        guard let job = workJob, let outcome = job.outcome else { return .failure(.invalidArgument) }
        switch outcome {
        case .success: return .success(())
        case .failure(let e):
            job.outcome = nil
            return .failure(e)
        }
    }

    /// The value the `.work` job just delivered returned, which the job lets go of (a
    /// large value is not kept until the next run); nil when there is none (the callback's
    /// result was a failure, or the value was taken already).
    package func takeWorkValue() -> (any Sendable)? {
        guard let job = workJob, case .success(let value) = job.outcome else { return nil }
        job.outcome = nil
        return value
    }
}
