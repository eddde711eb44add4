#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys
import EvLoop

// Awaitable forms of the File and Async watchers' operations (see AsyncSockets.swift for
// the rules they share: await them on the loop's executor; the callback forms' names and
// errors, `.endOfFile` at the end included; cancellation throws `CancellationError`; a
// `deadline` on every operation that does I/O; closes always happen).

extension File {
    /// Reads up to `buffer.count` bytes at the file's current position and returns the
    /// count; throws `EvError.endOfFile` at the end of the file (returns 0 only for an empty
    /// buffer).
    ///
    /// Regular files are always "ready", so the readiness backends (epoll, poll) run file
    /// reads and writes on the loop's small thread pool; io_uring does them in the kernel.
    /// Either way the task resumes on the loop thread. `deadline` (as `Completion.deadline`)
    /// withdraws an operation that has not started when it passes (`EvError.timedOut`); one
    /// the pool or the kernel has started reports its real result.
    nonisolated(nonsending)
    public func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline = .none,
                     on executor: LoopExecutor) async throws -> Int {
        try readCount(try await executor.perform(.read(fd: fd, buffer: buffer), deadline: deadline))
    }

    /// Reads up to `buffer.count` bytes at `offset` without moving the file's position
    /// (pread) and returns the count; throws `EvError.endOfFile` at or past the end.
    nonisolated(nonsending)
    public func pread(into buffer: UnsafeMutableRawBufferPointer, offset: UInt64, deadline: Deadline = .none,
                      on executor: LoopExecutor) async throws -> Int {
        try readCount(try await executor.perform(.pread(fd: fd, buffer: buffer, offset: offset), deadline: deadline))
    }

    /// Writes up to `buffer.count` bytes at the current position (appends in order when the
    /// file was opened with `.append`); returns the count written.
    nonisolated(nonsending)
    public func write(_ buffer: UnsafeRawBufferPointer, deadline: Deadline = .none,
                      on executor: LoopExecutor) async throws -> Int {
        try writeCount(try await executor.perform(.write(fd: fd, buffer: buffer), deadline: deadline))
    }

    /// Writes up to `buffer.count` bytes at `offset` without moving the file's position
    /// (pwrite); returns the count written.
    nonisolated(nonsending)
    public func pwrite(_ buffer: UnsafeRawBufferPointer, offset: UInt64, deadline: Deadline = .none,
                       on executor: LoopExecutor) async throws -> Int {
        try writeCount(try await executor.perform(.pwrite(fd: fd, buffer: buffer, offset: offset), deadline: deadline))
    }

    /// Writes all of `buffer` at `offset` (pwrite), resuming after short writes, within one
    /// overall `deadline`.
    nonisolated(nonsending)
    public func pwriteAll(_ buffer: UnsafeRawBufferPointer, offset: UInt64, deadline: Deadline = .none,
                          on executor: LoopExecutor) async throws {
        executor.preconditionOnLoopThread("File.pwriteAll(_:offset:deadline:on:)")
        let overall = deadline.fixed(from: executor.loopUnchecked.now)
        var done = 0
        while done < buffer.count {
            let rest = UnsafeRawBufferPointer(rebasing: buffer[done...])
            let n = try await pwrite(rest, offset: offset + UInt64(done), deadline: overall, on: executor)
            // A regular file never accepts 0 bytes of a non-empty write without an error
            // (ENOSPC and friends are errors); stop rather than spin if one ever does.
            if n == 0 { throw EvError.errno(EIO) }
            done += n
        }
    }
}

extension AsyncNotifier {
    /// Suspends until the notifier has been notified (from any thread) since the last wait
    /// consumed a notification; several notifications before the wait returns count as one.
    ///
    /// It waits with a `.poll` for readability and then reads the eventfd with a
    /// non-blocking read(2) on the loop thread (never an io_uring read of an eventfd, which
    /// Linux 6.15.4 broke). A wake-up that finds nothing to read (spurious readiness,
    /// PITFALLS D2, or a reader outside the loop) waits again.
    ///
    /// Throws `EvError.notifierInUse` if a wait is armed on the notifier already, in either
    /// form: one notifier, one wait at a time, as for `Async.wait` (issue 16).
    ///
    /// `deadline` bounds the whole wait (spurious wake-ups included): `EvError.timedOut`
    /// when no notification came before it.
    nonisolated(nonsending)
    public func wait(deadline: Deadline = .none, on executor: LoopExecutor) async throws {
        executor.preconditionOnLoopThread("AsyncNotifier.wait(deadline:on:)")
        guard claimWait() else { throw EvError.notifierInUse }
        defer { releaseWait() }
        let overall = deadline.fixed(from: executor.loopUnchecked.now)
        while true {
            let result = try await executor.perform(.poll(fd: fd, events: .readable), deadline: overall)
            guard case .poll(let r) = result else { unexpected(result) }
            _ = try r.get()
            // The notifier's own read (EINTR retried inside). False: nothing to read after
            // all (spurious readiness, PITFALLS D2, or another reader took it): wait again.
            if try consume().get() { return }
        }
    }
}

extension Async {
    /// The awaited `wait(loop:completion:callback:)`: suspends until the notifier has been
    /// notified (see `AsyncNotifier.wait(deadline:on:)`, which this is: the same errors,
    /// `.notifierInUse` included, and the same `deadline`).
    nonisolated(nonsending)
    public func wait(deadline: Deadline = .none, on executor: LoopExecutor) async throws {
        try await notifier.wait(deadline: deadline, on: executor)
    }
}
