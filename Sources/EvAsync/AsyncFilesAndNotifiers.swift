#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys
import EvLoop

// Awaitable forms of the File and Async watchers' operations (see AsyncSockets.swift for
// the rules they share: await them on the loop's executor; cancellation throws
// `CancellationError`; closes always happen).

extension File {
    /// Reads up to `buffer.count` bytes at the file's current position; returns the count,
    /// or 0 at the end of the file (or for an empty buffer).
    ///
    /// Regular files are always "ready", so the readiness backends (epoll, poll) run file
    /// reads and writes on the loop's small thread pool; io_uring does them in the kernel.
    /// Either way the task resumes on the loop thread.
    nonisolated(nonsending)
    public func read(into buffer: UnsafeMutableRawBufferPointer, on executor: LoopExecutor) async throws -> Int {
        try readCount(try await executor.perform(.read(fd: fd, buffer: buffer)))
    }

    /// Reads up to `buffer.count` bytes at `offset` (pread); 0 at or past the end.
    nonisolated(nonsending)
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, on executor: LoopExecutor) async throws -> Int {
        try readCount(try await executor.perform(.pread(fd: fd, buffer: buffer, offset: offset)))
    }

    /// Writes up to `buffer.count` bytes at the current position (appends in order when the
    /// file was opened with `.append`); returns the count written.
    nonisolated(nonsending)
    public func write(_ buffer: UnsafeRawBufferPointer, on executor: LoopExecutor) async throws -> Int {
        try writeCount(try await executor.perform(.write(fd: fd, buffer: buffer)))
    }

    /// Writes up to `buffer.count` bytes at `offset` (pwrite); returns the count written.
    nonisolated(nonsending)
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64, on executor: LoopExecutor) async throws -> Int {
        try writeCount(try await executor.perform(.pwrite(fd: fd, buffer: buffer, offset: offset)))
    }

    /// Writes all of `buffer` at `offset`, resuming after short writes.
    nonisolated(nonsending)
    public func writeAll(_ buffer: UnsafeRawBufferPointer, at offset: UInt64, on executor: LoopExecutor) async throws {
        var done = 0
        while done < buffer.count {
            let rest = UnsafeRawBufferPointer(rebasing: buffer[done...])
            let n = try await write(rest, at: offset + UInt64(done), on: executor)
            // A regular file never accepts 0 bytes of a non-empty write without an error
            // (ENOSPC and friends are errors); stop rather than spin if one ever does.
            if n == 0 { throw EvError.errno(EIO) }
            done += n
        }
    }

    /// Closes the file through the loop (whatever the task's cancellation state).
    nonisolated(nonsending)
    public func close(on executor: LoopExecutor) async throws {
        try await closeDescriptor(fd, on: executor)
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
    nonisolated(nonsending)
    public func wait(on executor: LoopExecutor) async throws {
        guard claimWait() else { throw EvError.notifierInUse }
        defer { releaseWait() }
        while true {
            let result = try await executor.perform(.poll(fd: fd, events: .readable))
            guard case .poll(let r) = result else { unexpected(result) }
            _ = try r.get()
            var counter: UInt64 = 0
            while true {
                if read(fd, &counter, 8) == 8 { return }
                let e = cevsys_errno()
                // EINTR: a signal arrived first; retry the read.
                if e == EINTR { continue }
                // EAGAIN: nothing to read after all (spurious readiness, or another waiter
                // consumed it): wait again.
                if e == EAGAIN { break }
                throw EvError(errno: e)
            }
        }
    }
}
