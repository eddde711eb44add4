// Conformance: the awaitable forms of the file-system operations, on every backend: the
// same operations as the callback forms, so the same results and typed errors.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: awaited file-system operations")
struct AsyncFileSystemTests {
    @Test(arguments: conformanceBackends)
    func awaitedFileSystemRoundTrip(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let dir = try ScratchDirectory()
            defer { dir.remove() }
            let base = dir.path
            let outcome = try runAsync(executor) { () async throws -> [String] in
                var log: [String] = []
                try await FileSystem.makeDirectory(path: base + "/d", on: executor)
                let file = try await File.open(path: base + "/d/f", options: [.readWrite, .create, .exclusive], on: executor)
                try await file.allocate(length: 4096, on: executor)
                try await file.truncate(length: 100, on: executor)
                try await file.sync(dataOnly: true, on: executor)
                try await file.sync(on: executor)
                let status = try await file.stat(on: executor)
                log.append("size \(status.size) \(status.kind)")
                try await file.close(on: executor)
                try await FileSystem.rename(from: base + "/d/f", to: base + "/g", on: executor)
                let moved = try await FileSystem.stat(path: base + "/g", on: executor)
                log.append("moved \(moved.inode == status.inode)")
                do {
                    _ = try await File.open(path: base + "/d/f", on: executor)
                    log.append("opened a missing file")
                } catch let e as EvError {
                    log.append("missing \(e)")
                }
                do {
                    try await FileSystem.removeDirectory(path: base + "/g", on: executor)
                } catch let e as EvError {
                    log.append("rmdir file \(e == .notDirectory)")
                }
                try await FileSystem.unlink(path: base + "/g", on: executor)
                try await FileSystem.removeDirectory(path: base + "/d", on: executor)
                return log
            }
            #expect(outcome == ["size 100 regular", "moved true", "missing \(EvError.noSuchFile)", "rmdir file true"])
            #expect(access(base + "/d", F_OK) != 0 && access(base + "/g", F_OK) != 0)
            #expect(dir.openDescriptors().isEmpty)
        }
    }
}
