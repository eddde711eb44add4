// Conformance: file-system operations (open, stat, fsync/fdatasync, truncate, fallocate,
// rename, unlink, rmdir, mkdir). io_uring runs them in the kernel (OPENAT, STATX, ...),
// epoll and poll on the loop's file pool; results and typed errors must be identical. Every
// test runs unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory for one test (under TMPDIR), removed with everything in it by `remove()`.
struct ScratchDirectory {
    let path: String

    /// A new directory under TMPDIR, or under `base`.
    init(under base: String? = nil) throws {
        let name = "evloop-fs-XXXXXX"
        var template = Array((base.map { $0 + "/" + name } ?? temporaryPath(name)).utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SysCallError("mkdtemp")
        }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    func at(_ name: String) -> String { path + "/" + name }

    /// Descriptors of this process that refer to something inside the directory (a leak
    /// after a failed operation shows up here; other tests' descriptors never match).
    func openDescriptors() -> [Int32] {
        Fds.table().filter { $0.value.hasPrefix(path) }.map(\.key)
    }

    func remove() { Self.removeTree(path) }

    /// Removes `path` and, for a directory, everything below it (no symbolic link is
    /// followed: lstat).
    static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            if let d = opendir(path) {
                var names: [String] = []
                while let entry = readdir(d) {
                    let name = direntName(entry)
                    if name != "." && name != ".." { names.append(name) }
                }
                closedir(d)
                for name in names { removeTree(path + "/" + name) }
            }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}

/// Runs one file-system call (callback form) on `loop` and returns its result.
func awaitResult<Value>(_ loop: LoopCore, sourceLocation: SourceLocation = #_sourceLocation,
                        _ start: (Completion, @escaping (Completion, Result<Value, EvError>) -> CallbackAction) throws(EvError) -> Void)
    throws -> Result<Value, EvError>? {
    var result: Result<Value, EvError>?
    try start(Completion()) { _, r in result = r; return .disarm }
    #expect(try runUntil(loop) { result != nil }, "the operation did not complete", sourceLocation: sourceLocation)
    return result
}

/// A loop whose file-system operations all run on its file pool: epoll and poll always;
/// io_uring told by its opcode probe that the kernel lacks every file opcode (what a
/// kernel before 5.6 looks like), so the pool path is tested on every backend.
func makeFilePoolLoop(_ backend: Backend) throws -> LoopCore {
    guard backend == .ioUring else { return try makeTestLoop(backend) }
    do {
        let loop = try UringLoop(entries: 64, setupFlags: [], probeOverride: { name, supported in
            ["OPENAT", "STATX", "FSYNC", "FALLOCATE", "FTRUNCATE", "RENAMEAT", "UNLINKAT", "MKDIRAT"]
                .contains { name == "IORING_OP_" + $0 } ? false : supported
        })
        for kind in [OperationKind.open, .stat, .fsync, .fallocate, .truncate, .rename, .unlink, .mkdir] {
            #expect(!loop.runsInKernel(kind), "\(kind) still runs in the kernel")
        }
        return loop
    } catch {
        return try makeTestLoop(backend)   // reports the skip
    }
}

/// A loop for a file-system test (on its file pool when `onPool`), its harness and a fresh
/// directory; the caller finishes the harness and removes the directory.
func fileTestLoop(_ backend: Backend, onPool: Bool = false) throws -> (LoopCore, Harness, ScratchDirectory) {
    let loop = try onPool ? makeFilePoolLoop(backend) : makeTestLoop(backend)
    return (loop, Harness(loop), try ScratchDirectory())
}

@Suite("Conformance: file-system operations")
struct FileSystemConformanceTests {

    /// Open (create), write, stat, fdatasync and fsync, truncate, fallocate (extending and
    /// keeping the size), stat by path, close: on the loop's default path (the kernel's
    /// opcodes on io_uring) and on the file pool.
    @Test(arguments: conformanceBackends, [false, true])
    func openStatSyncTruncateAllocate(backend: Backend, onPool: Bool) throws {
        let (loop, h, dir) = try fileTestLoop(backend, onPool: onPool)
        defer { h.finish(); dir.remove() }
        let path = dir.at("data")

        let opened = try awaitResult(loop) { (c, cb) throws(EvError) in
            try File.open(loop: loop, completion: c, path: path, options: [.readWrite, .create, .exclusive],
                          permissions: 0o640, callback: cb)
        }
        guard case .success(let file)? = opened else { Issue.record("open: \(String(describing: opened))"); return }
        _ = h.own(file.fd)
        #expect(fcntl(file.fd, F_GETFD) & FD_CLOEXEC != 0, "not close-on-exec")
        let bytes = h.buffer(Array(repeating: 0x5A, count: 1000))
        #expect(pwrite(file.fd, bytes.baseAddress, 1000, 0) == 1000)

        let status = try awaitResult(loop) { (c, cb) throws(EvError) in try file.stat(loop: loop, completion: c, callback: cb) }
        var st = stat()
        #expect(fstat(file.fd, &st) == 0)
        if case .success(let s)? = status {
            #expect(s.size == 1000)
            #expect(s.kind == .regular)
            #expect(s.permissions == 0o640 & ~currentUmask())
            #expect(s.inode == UInt64(st.st_ino))
            #expect(s.blockSize > 0)
            #expect(s.linkCount == 1)
            #expect(s.modificationTime.components.seconds == Int64(st.st_mtim.tv_sec))
        } else {
            Issue.record("stat: \(String(describing: status))")
        }

        for dataOnly in [true, false] {
            let synced = try awaitResult(loop) { (c, cb) throws(EvError) in
                try file.sync(loop: loop, completion: c, dataOnly: dataOnly, callback: cb)
            }
            #expect(synced.map { (try? $0.get()) != nil } == true, "sync(dataOnly: \(dataOnly)): \(String(describing: synced))")
        }

        let cut = try awaitResult(loop) { (c, cb) throws(EvError) in try file.truncate(loop: loop, completion: c, length: 10, callback: cb) }
        #expect(cut.map { (try? $0.get()) != nil } == true, "truncate: \(String(describing: cut))")
        #expect(fileSize(file.fd) == 10)

        let grown = try awaitResult(loop) { (c, cb) throws(EvError) in
            try file.allocate(loop: loop, completion: c, offset: 0, length: 8192, callback: cb)
        }
        #expect(grown.map { (try? $0.get()) != nil } == true, "allocate: \(String(describing: grown))")
        #expect(fileSize(file.fd) == 8192)
        let kept = try awaitResult(loop) { (c, cb) throws(EvError) in
            try file.allocate(loop: loop, completion: c, offset: 8192, length: 65536, keepSize: true, callback: cb)
        }
        #expect(kept.map { (try? $0.get()) != nil } == true, "allocate(keepSize:): \(String(describing: kept))")
        #expect(fileSize(file.fd) == 8192)

        let byPath = try awaitResult(loop) { (c, cb) throws(EvError) in
            try FileSystem.stat(loop: loop, completion: c, path: path, callback: cb)
        }
        if case .success(let s)? = byPath {
            #expect(s.inode == UInt64(st.st_ino) && s.size == 8192)
        } else {
            Issue.record("stat by path: \(String(describing: byPath))")
        }
    }

    /// mkdir, rename into it, unlink of the file, rmdir; and the typed errors of each:
    /// EEXIST, EISDIR, ENOTDIR, ENOTEMPTY, ENOENT.
    @Test(arguments: conformanceBackends, [false, true])
    func directoriesRenameAndUnlink(backend: Backend, onPool: Bool) throws {
        let (loop, h, dir) = try fileTestLoop(backend, onPool: onPool)
        defer { h.finish(); dir.remove() }
        let sub = dir.at("sub"), file = dir.at("file"), moved = dir.at("sub/moved")
        #expect(creat(file, 0o644) >= 0 ? true : false)   // the descriptor is closed below
        if let fd = Fds.table().first(where: { $0.value == file })?.key { close(fd) }

        func void(_ start: (Completion, @escaping FileSystem.VoidCallback) throws(EvError) -> Void,
                  sourceLocation: SourceLocation = #_sourceLocation) throws -> Result<Void, EvError>? {
            try awaitResult(loop, sourceLocation: sourceLocation, start)
        }
        func error(_ r: Result<Void, EvError>?) -> EvError? {
            if case .failure(let e)? = r { return e }
            return nil
        }
        func succeeded(_ r: Result<Void, EvError>?) -> Bool {
            if case .success? = r { return true }
            return false
        }

        #expect(succeeded(try void { (c, cb) throws(EvError) in try FileSystem.makeDirectory(loop: loop, completion: c, path: sub, callback: cb) }))
        #expect(error(try void { (c, cb) throws(EvError) in try FileSystem.makeDirectory(loop: loop, completion: c, path: sub, callback: cb) }) == .fileExists)
        let kind = try awaitResult(loop) { (c, cb) throws(EvError) in try FileSystem.stat(loop: loop, completion: c, path: sub, callback: cb) }
        #expect((try? kind?.get())?.kind == .directory)

        #expect(succeeded(try void { (c, cb) throws(EvError) in try FileSystem.rename(loop: loop, completion: c, from: file, to: moved, callback: cb) }))
        #expect(access(moved, F_OK) == 0 && access(file, F_OK) != 0)
        #expect(error(try void { (c, cb) throws(EvError) in try FileSystem.rename(loop: loop, completion: c, from: file, to: moved, callback: cb) }) == .noSuchFile)

        #expect(error(try void { (c, cb) throws(EvError) in try FileSystem.unlink(loop: loop, completion: c, path: sub, callback: cb) }) == .isDirectory)
        #expect(error(try void { (c, cb) throws(EvError) in try FileSystem.removeDirectory(loop: loop, completion: c, path: sub, callback: cb) }) == .directoryNotEmpty)
        #expect(error(try void { (c, cb) throws(EvError) in try FileSystem.removeDirectory(loop: loop, completion: c, path: moved, callback: cb) }) == .notDirectory)
        #expect(error(try void { (c, cb) throws(EvError) in try FileSystem.makeDirectory(loop: loop, completion: c, path: moved + "/x", callback: cb) }) == .notDirectory)

        #expect(succeeded(try void { (c, cb) throws(EvError) in try FileSystem.unlink(loop: loop, completion: c, path: moved, callback: cb) }))
        #expect(error(try void { (c, cb) throws(EvError) in try FileSystem.unlink(loop: loop, completion: c, path: moved, callback: cb) }) == .noSuchFile)
        #expect(succeeded(try void { (c, cb) throws(EvError) in try FileSystem.removeDirectory(loop: loop, completion: c, path: sub, callback: cb) }))
        let gone = try awaitResult(loop) { (c, cb) throws(EvError) in try FileSystem.stat(loop: loop, completion: c, path: sub, callback: cb) }
        if case .failure(let e)? = gone { #expect(e == .noSuchFile) } else { Issue.record("stat of a removed directory: \(String(describing: gone))") }
    }

    /// Bad input gets a typed error and leaves no descriptor behind: a missing file or
    /// directory on the way (ENOENT), a directory opened for writing (EISDIR), a file used
    /// as a directory (ENOTDIR), an exclusive create of an existing file (EEXIST),
    /// permission denied (EACCES/EPERM: a file of /sys only its owner reads, unlinking a
    /// /proc entry, which even root may not), a path with a NUL byte (refused before the
    /// kernel), a path longer than PATH_MAX (ENAMETOOLONG), stat of a bad descriptor (EBADF).
    @Test(arguments: conformanceBackends, [false, true])
    func badInputIsTypedAndLeaksNothing(backend: Backend, onPool: Bool) throws {
        let (loop, h, dir) = try fileTestLoop(backend, onPool: onPool)
        defer { h.finish(); dir.remove() }
        let existing = dir.at("existing")
        let fd = open(existing, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        close(fd)

        func openError(_ path: String, _ options: File.OpenOptions, sourceLocation: SourceLocation = #_sourceLocation) throws -> EvError? {
            let r = try awaitResult(loop, sourceLocation: sourceLocation) { (c, cb) throws(EvError) in
                try File.open(loop: loop, completion: c, path: path, options: options, callback: cb)
            }
            switch r {
            case .success(let f)?:
                close(f.fd)
                Issue.record("opened \(path)", sourceLocation: sourceLocation)
                return nil
            case .failure(let e)?: return e
            case nil: return nil
            }
        }
        #expect(try openError(dir.at("missing"), .readOnly) == .noSuchFile)
        #expect(try openError(dir.at("no/such/dir/file"), [.writeOnly, .create]) == .noSuchFile)
        #expect(try openError(dir.path, .writeOnly) == .isDirectory)
        #expect(try openError(existing + "/below", .readOnly) == .notDirectory)
        #expect(try openError(existing, [.writeOnly, .create, .exclusive]) == .fileExists)
        #expect(try openError("/sys/kernel/notes", .writeOnly) == .permissionDenied)
        #expect(try openError(dir.at("nul\0byte"), [.writeOnly, .create]) == .invalidArgument)
        #expect(access(dir.at("nul"), F_OK) != 0, "the path was cut at the NUL byte")
        #expect(try openError(dir.path + "/" + String(repeating: "d/", count: 2100) + "f", .readOnly) == .nameTooLong)

        let unlinked = try awaitResult(loop) { (c, cb) throws(EvError) in
            try FileSystem.unlink(loop: loop, completion: c, path: "/proc/version", callback: cb)
        }
        if case .failure(let e)? = unlinked { #expect(e == .permissionDenied) } else { Issue.record("unlink /proc/version: \(String(describing: unlinked))") }
        let renamed = try awaitResult(loop) { (c, cb) throws(EvError) in
            try FileSystem.rename(loop: loop, completion: c, from: existing, to: dir.at("bad\0target"), callback: cb)
        }
        if case .failure(let e)? = renamed { #expect(e == .invalidArgument) } else { Issue.record("rename to a NUL path: \(String(describing: renamed))") }
        let badStat = try awaitResult(loop) { (c, cb) throws(EvError) in
            try File(fd: 1_000_000).stat(loop: loop, completion: c, callback: cb)
        }
        if case .failure(let e)? = badStat { #expect(e == .badFileDescriptor) } else { Issue.record("stat of a bad descriptor: \(String(describing: badStat))") }

        #expect(dir.openDescriptors().isEmpty, "descriptors left open: \(dir.openDescriptors())")
    }

    /// An operation still queued for the file pool (both of its threads busy) is withdrawn
    /// by a cancel: `.canceled`, the cancel succeeds, and it never runs (no file created).
    @Test(arguments: conformanceBackends)
    func cancelBeforeStartOnThePool(backend: Backend) throws {
        let loop = try makeFilePoolLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let gate = Gate(), blockers = Outcomes<Int>()
        try loop.filePool.runHeld(loop: loop, by: gate, returning: 1, into: blockers)
        try loop.filePool.runHeld(loop: loop, by: gate, returning: 2, into: blockers)
        #expect(gate.awaitWaiters(2))
        let opening = Completion()
        var opened: Result<File, EvError>?
        try File.open(loop: loop, completion: opening, path: dir.at("never"), options: [.writeOnly, .create]) { _, r in
            opened = r
            return .disarm
        }
        let cancelResult = try cancelAndRun(opening, on: loop) { opened != nil }
        #expect(cancelResult?.error == nil, "the cancel reported \(String(describing: cancelResult))")
        if case .failure(let e)? = opened { #expect(e == .canceled) } else { Issue.record("open: \(String(describing: opened))") }
        gate.open()
        #expect(try runUntilDone(loop))
        #expect(blockers.count == 2)
        #expect(access(dir.at("never"), F_OK) != 0, "the withdrawn open ran")
    }

    /// A close through the loop withdraws the file-system operations still queued for the
    /// pool on that descriptor (`.canceled`: an fsync must never run on a file that reused
    /// the number), then closes.
    @Test(arguments: conformanceBackends)
    func closeWithdrawsQueuedOperationsOnItsDescriptor(backend: Backend) throws {
        let (loop, h, dir) = try fileTestLoop(backend, onPool: true)
        defer { h.finish(); dir.remove() }
        let fd = open(dir.at("f"), O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        let file = File(fd: fd)
        let gate = Gate(), blockers = Outcomes<Int>()
        try loop.filePool.runHeld(loop: loop, by: gate, returning: 1, into: blockers)
        try loop.filePool.runHeld(loop: loop, by: gate, returning: 2, into: blockers)
        #expect(gate.awaitWaiters(2))
        var synced: Result<Void, EvError>?, cut: Result<Void, EvError>?, closed: Result<Void, EvError>?
        try file.sync(loop: loop, completion: Completion()) { _, r in synced = r; return .disarm }
        try file.truncate(loop: loop, completion: Completion(), length: 0) { _, r in cut = r; return .disarm }
        try file.close(loop: loop, completion: Completion()) { _, r in closed = r; return .disarm }
        #expect(try runUntil(loop) { closed != nil })
        #expect(synced.map { if case .failure(.canceled) = $0 { return true }; return false } == true, "\(String(describing: synced))")
        #expect(cut.map { if case .failure(.canceled) = $0 { return true }; return false } == true, "\(String(describing: cut))")
        #expect(closed.map { (try? $0.get()) != nil } == true, "\(String(describing: closed))")
        gate.open()
        #expect(try runUntilDone(loop))
        #expect(blockers.count == 2)
    }

    /// `cancelAll()` ends queued file operations with `.canceled`; `run(.untilDone)` then
    /// drains, and nothing queued ran. On io_uring's native path the operations in the
    /// kernel report their real result or `.canceled`, and an open that won keeps its
    /// descriptor (handed to the callback, closed here).
    @Test(arguments: conformanceBackends, [false, true])
    func cancelAllEndsFileOperations(backend: Backend, onPool: Bool) throws {
        let (loop, h, dir) = try fileTestLoop(backend, onPool: onPool)
        defer { h.finish(); dir.remove() }
        let gate = Gate(), blockers = Outcomes<Int>()
        if onPool || backend != .ioUring {
            try loop.filePool.runHeld(loop: loop, by: gate, returning: 1, into: blockers)
            try loop.filePool.runHeld(loop: loop, by: gate, returning: 2, into: blockers)
            #expect(gate.awaitWaiters(2))
        }
        var results: [Result<File, EvError>] = []
        for i in 0..<8 {
            try File.open(loop: loop, completion: Completion(), path: dir.at("f\(i)"), options: [.writeOnly, .create]) { _, r in
                results.append(r)
                return .disarm
            }
        }
        loop.cancelAll()
        gate.open()
        #expect(try runUntilDone(loop))
        #expect(results.count == 8)
        for r in results { if case .success(let f) = r { close(f.fd) } }
        if onPool || backend != .ioUring {
            #expect(results.allSatisfy { $0 == .failure(.canceled) }, "\(results)")
            #expect((0..<8).allSatisfy { access(dir.at("f\($0)"), F_OK) != 0 }, "a withdrawn open ran")
        } else {
            #expect(results.allSatisfy { if case .failure(let e) = $0 { return e == .canceled }; return true }, "\(results)")
        }
        #expect(loop.activeCount == 0)
        #expect(dir.openDescriptors().isEmpty)
    }

    /// io_uring: on a kernel with every file opcode (IORING_OP_FTRUNCATE is 6.9) each
    /// operation is one SQE of its kind, and none uses the file pool (no thread starts).
    @Test func uringRunsFileOperationsInTheKernel() throws {
        guard let loop = try makeTestLoop(.ioUring) as? UringLoop else { return }
        let h = Harness(loop)
        defer { h.finish() }
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        let kinds: [OperationKind] = [.open, .stat, .fsync, .fallocate, .truncate, .rename, .unlink, .mkdir]
        let missing = kinds.filter { !loop.runsInKernel($0) }
        if !missing.isEmpty {
            let message = "EVLOOP TEST SKIPPED: this kernel's io_uring lacks \(missing) (they run on the file pool)\n"
            _ = Array(message.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            try Test.cancel(Comment(rawValue: message))
        }
        let opened = try awaitResult(loop) { (c, cb) throws(EvError) in
            try File.open(loop: loop, completion: c, path: dir.at("f"), options: [.readWrite, .create], callback: cb)
        }
        guard case .success(let file)? = opened else { Issue.record("open: \(String(describing: opened))"); return }
        _ = h.own(file.fd)
        _ = try awaitResult(loop) { (c, cb) throws(EvError) in try file.stat(loop: loop, completion: c, callback: cb) }
        _ = try awaitResult(loop) { (c, cb) throws(EvError) in try file.sync(loop: loop, completion: c, callback: cb) }
        _ = try awaitResult(loop) { (c, cb) throws(EvError) in try file.allocate(loop: loop, completion: c, length: 4096, callback: cb) }
        _ = try awaitResult(loop) { (c, cb) throws(EvError) in try file.truncate(loop: loop, completion: c, length: 1, callback: cb) }
        _ = try awaitResult(loop) { (c, cb) throws(EvError) in try FileSystem.makeDirectory(loop: loop, completion: c, path: dir.at("d"), callback: cb) }
        _ = try awaitResult(loop) { (c, cb) throws(EvError) in try FileSystem.rename(loop: loop, completion: c, from: dir.at("f"), to: dir.at("d/f"), callback: cb) }
        _ = try awaitResult(loop) { (c, cb) throws(EvError) in try FileSystem.unlink(loop: loop, completion: c, path: dir.at("d/f"), callback: cb) }
        #expect(fileSize(file.fd) == 1)
        let counts = loop.sqeCounts
        for kind in kinds {
            #expect(counts[Int(kind.rawValue)] == 1, "\(kind): \(counts[Int(kind.rawValue)]) SQEs")
        }
    }

    /// The operation is readable back from the completion (`Completion.operation`), with
    /// its paths, as it was stored.
    @Test func operationsRoundTripThroughTheCompletion() {
        let ops: [Operation] = [
            .open(path: "a/b", flags: O_RDWR | O_CREAT, permissions: 0o600),
            .stat(path: "x", followSymlinks: false), .statDescriptor(fd: 7), .fsync(fd: 3, dataOnly: true),
            .fallocate(fd: 4, mode: 1, offset: 4096, length: 8192), .truncate(fd: 5, length: 99),
            .rename(from: "from", to: "to"), .unlink(path: "dir", directory: true), .mkdir(path: "new", permissions: 0o700),
        ]
        for op in ops {
            let c = Completion(op)
            #expect("\(c.operation)" == "\(op)")
            #expect(c.operation.kind == op.kind)
        }
    }
}

private func fileSize(_ fd: Int32) -> Int {
    var st = stat()
    return fstat(fd, &st) == 0 ? Int(st.st_size) : -1
}

private func currentUmask() -> UInt32 {
    // umask(2) can only be read by setting it; set it back at once. Tests create files
    // with explicit modes, so the moment it is changed does not matter to them.
    let m = umask(0o022)
    umask(m)
    return UInt32(m)
}
