#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop

// Awaitable forms of the file-system operations (`File.open`, `stat`, `sync`, `truncate`,
// `allocate`, and `FileSystem`'s path operations): the same loop operations as the
// callback forms, so the same errors on every backend. Await them on the loop's executor.
// Cancelling the task cancels the operation: one that has not started (still queued for
// the file pool) throws `CancellationError`; one that won the race returns its result (an
// opened file is returned, never leaked). They take no deadline: none of them waits for
// readiness, and a kernel worker or pool thread that runs one cannot be interrupted.

extension File {
    /// Opens `path` through the loop (see the callback form); the caller owns the file.
    nonisolated(nonsending)
    public static func open(path: String, options: OpenOptions = .readOnly, permissions: mode_t = 0o644,
                            on executor: LoopExecutor) async throws -> File {
        let result = try await executor.perform(.open(path: path, flags: options.rawValue, permissions: UInt32(permissions)))
        guard case .open(let r) = result else { unexpected(result) }
        return File(fd: try r.get())
    }

    /// The file's status (statx of the descriptor).
    nonisolated(nonsending)
    public func stat(on executor: LoopExecutor) async throws -> FileStatus {
        try await status(of: .statDescriptor(fd: fd), on: executor)
    }

    /// fsync, or fdatasync with `dataOnly`.
    nonisolated(nonsending)
    public func sync(dataOnly: Bool = false, on executor: LoopExecutor) async throws {
        try done(try await executor.perform(.fsync(fd: fd, dataOnly: dataOnly)))
    }

    /// Cuts or extends the file to `length` bytes (ftruncate).
    nonisolated(nonsending)
    public func truncate(length: UInt64, on executor: LoopExecutor) async throws {
        try done(try await executor.perform(.truncate(fd: fd, length: length)))
    }

    /// Reserves `length` bytes at `offset` (fallocate); extends the file unless `keepSize`.
    nonisolated(nonsending)
    public func allocate(offset: UInt64 = 0, length: UInt64, keepSize: Bool = false,
                         on executor: LoopExecutor) async throws {
        try done(try await executor.perform(.fallocate(fd: fd, mode: keepSize ? 1 : 0, offset: offset, length: length)))
    }
}

extension FileSystem {
    /// The status of the file at `path` (statx).
    nonisolated(nonsending)
    public static func stat(path: String, followSymlinks: Bool = true, on executor: LoopExecutor) async throws -> FileStatus {
        try await status(of: .stat(path: path, followSymlinks: followSymlinks), on: executor)
    }

    /// Renames `from` to `to` (renameat).
    nonisolated(nonsending)
    public static func rename(from: String, to: String, on executor: LoopExecutor) async throws {
        try done(try await executor.perform(.rename(from: from, to: to)))
    }

    /// Removes the file at `path` (unlinkat).
    nonisolated(nonsending)
    public static func unlink(path: String, on executor: LoopExecutor) async throws {
        try done(try await executor.perform(.unlink(path: path, directory: false)))
    }

    /// Removes the empty directory at `path` (unlinkat with AT_REMOVEDIR).
    nonisolated(nonsending)
    public static func removeDirectory(path: String, on executor: LoopExecutor) async throws {
        try done(try await executor.perform(.unlink(path: path, directory: true)))
    }

    /// Creates the directory `path` (mkdirat).
    nonisolated(nonsending)
    public static func makeDirectory(path: String, permissions: mode_t = 0o755, on executor: LoopExecutor) async throws {
        try done(try await executor.perform(.mkdir(path: path, permissions: UInt32(permissions))))
    }
}

/// A `.stat` or `.statDescriptor` awaited on `executor`, with the status the pooled
/// completion keeps (`Completion.fileStatus`; the result itself says only whether statx
/// answered), read before the completion goes back to the pool.
nonisolated(nonsending)
private func status(of operation: Operation, on executor: LoopExecutor) async throws -> FileStatus {
    executor.preconditionOnLoopThread("an awaited loop operation")
    return try await executor.performChecked(operation, cancellable: true) { c, result in
        result.status(of: c)
    }.get()
}

private func done(_ result: CompletionResult) throws {
    guard case .fileSystem(let r) = result else { unexpected(result) }
    try r.get()
}
