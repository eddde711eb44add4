#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Operations on paths that need no open descriptor: stat, rename, unlink, mkdir, rmdir.
///
/// Why loop operations: on a slow disk or a network file system each of these can block
/// for as long as the device takes, and a blocked loop thread stalls every connection it
/// serves. io_uring runs them in the kernel (IORING_OP_STATX, RENAMEAT, UNLINKAT, MKDIRAT,
/// Linux 5.6 to 5.15); epoll and poll, and io_uring on a kernel without the opcode (probed
/// at init), run them on the loop's file pool of two threads, as libuv runs its `uv_fs_*`.
/// Either way the callback runs on the loop thread, with the same typed errors.
///
/// A namespace of static functions, like `LoopTimer`: it holds nothing to make an instance
/// of. Paths are relative to the working directory. The loop copies each path into memory
/// the completion owns, so the string need not outlive the call; a path with a NUL byte is
/// `.invalidArgument`. File-system operations take no deadline (a kernel worker or pool
/// thread that runs one cannot be interrupted).
///
/// Errors: `.noSuchFile` (ENOENT), `.permissionDenied` (EACCES, EPERM), `.isDirectory`
/// (EISDIR: unlink of a directory), `.notDirectory` (ENOTDIR: rmdir of a file, or a file on
/// the way), `.fileExists` (EEXIST: mkdir of an existing name), `.directoryNotEmpty`
/// (ENOTEMPTY: rmdir or rename onto a non-empty directory).
///
/// ```swift
/// try FileSystem.rename(loop: loop, completion: c, from: "data.tmp", to: "data") { _, result in
///     if case .failure(let error) = result { print("rename failed:", error) }
///     return .disarm
/// }
/// ```
public enum FileSystem {
    /// Success or failure without a value.
    public typealias VoidCallback = (Completion, Result<Void, EvError>) -> CallbackAction
    /// A file's status.
    public typealias StatusCallback = (Completion, Result<FileStatus, EvError>) -> CallbackAction

    /// The status of the file at `path` (statx), of a symbolic link's target unless
    /// `followSymlinks` is false.
    public static func stat(loop: some EventLoop, completion: Completion, path: String, followSymlinks: Bool = true,
                            callback: @escaping StatusCallback) throws(EvError) {
        try completion.start(.stat(path: path, followSymlinks: followSymlinks), on: loop,
                             viewing: { $1.status(of: $0) }, callback: callback)
    }

    /// Renames `from` to `to` (renameat), atomically replacing a file at `to`.
    public static func rename(loop: some EventLoop, completion: Completion, from: String, to: String,
                              callback: @escaping VoidCallback) throws(EvError) {
        try completion.start(.rename(from: from, to: to), on: loop, viewing: { $1.fileSystemResult }, callback: callback)
    }

    /// Removes the file (or symbolic link, or socket) at `path` (unlinkat); a directory is
    /// `.isDirectory` (use `removeDirectory`).
    public static func unlink(loop: some EventLoop, completion: Completion, path: String,
                              callback: @escaping VoidCallback) throws(EvError) {
        try completion.start(.unlink(path: path, directory: false), on: loop, viewing: { $1.fileSystemResult }, callback: callback)
    }

    /// Removes the empty directory at `path` (unlinkat with AT_REMOVEDIR); one with entries
    /// is `.directoryNotEmpty`, a file `.notDirectory`.
    public static func removeDirectory(loop: some EventLoop, completion: Completion, path: String,
                                       callback: @escaping VoidCallback) throws(EvError) {
        try completion.start(.unlink(path: path, directory: true), on: loop, viewing: { $1.fileSystemResult }, callback: callback)
    }

    /// Creates the directory `path` (mkdirat) with `permissions` less the process's umask;
    /// an existing name is `.fileExists`.
    public static func makeDirectory(loop: some EventLoop, completion: Completion, path: String,
                                     permissions: mode_t = 0o755, callback: @escaping VoidCallback) throws(EvError) {
        try completion.start(.mkdir(path: path, permissions: UInt32(permissions)), on: loop,
                             viewing: { $1.fileSystemResult }, callback: callback)
    }
}
