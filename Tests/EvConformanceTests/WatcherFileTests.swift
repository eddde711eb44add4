// Watchers: File (open with O_CLOEXEC, read, pread, write, pwrite, close through the loop).
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Watcher: File")
struct WatcherFileTests {

    /// A unique file in the temporary directory for this test (removed by the caller).
    private func uniqueFile() -> String {
        var template = Array(temporaryPath("evloop-watcher-file-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd >= 0 { close(fd) }
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Runs one operation through the loop and returns its count result.
    private func await_(_ loop: LoopCore, sourceLocation: SourceLocation = #_sourceLocation,
                        _ start: (@escaping File.CountCallback) throws -> Void) throws -> Result<Int, EvError>? {
        var result: Result<Int, EvError>?
        try start { _, r in result = r; return .disarm }
        #expect(try runUntil(loop) { result != nil }, sourceLocation: sourceLocation)
        return result
    }

    /// Sequential writes append in order, pwrite overwrites in place, then read and pread
    /// read it all back; a read at the end is `.endOfFile`. The file is close-on-exec.
    @Test(.tags(.pitfallE1), arguments: conformanceBackends)
    func writeThenReadBack(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let path = uniqueFile()
        defer { unlink(path) }
        let file = try File(path: path, options: [.readWrite, .create, .truncate], permissions: 0o600)
        #expect(fcntl(file.fd, F_GETFD) & FD_CLOEXEC != 0)
        let c = Completion()

        let first = h.buffer(Array("hello, ".utf8))
        let second = h.buffer((0..<10_000).map { patternByte($0) })
        #expect(try await_(loop) { try file.write(loop: loop, completion: c, buffer: UnsafeRawBufferPointer(first), callback: $0) } == .success(7))
        #expect(try await_(loop) { try file.write(loop: loop, completion: c, buffer: UnsafeRawBufferPointer(second), callback: $0) } == .success(10_000))
        let patch = h.buffer(Array("HELLO".utf8))
        #expect(try await_(loop) { try file.pwrite(loop: loop, completion: c, buffer: UnsafeRawBufferPointer(patch), offset: 0, callback: $0) } == .success(5))

        var expected = Array("HELLO, ".utf8) + (0..<10_000).map { patternByte($0) }
        #expect(fileContent(file.fd) == expected)

        // pread at an offset, without moving the current offset (which is at the end).
        let window = h.buffer(100)
        #expect(try await_(loop) { try file.pread(loop: loop, completion: c, buffer: window, offset: 7, callback: $0) } == .success(100))
        #expect(Array(window) == Array(expected[7..<107]))
        let atEnd = h.buffer(16)
        #expect(try await_(loop) { try file.read(loop: loop, completion: c, buffer: atEnd, callback: $0) } == .failure(.endOfFile))

        // Rewind and read everything with sequential reads (each may be short).
        #expect(lseek(file.fd, 0, SEEK_SET) == 0)
        let chunk = h.buffer(4096)
        var readBack: [UInt8] = []
        while true {
            let r = try await_(loop) { try file.read(loop: loop, completion: c, buffer: chunk, callback: $0) }
            guard case .success(let n)? = r else {
                #expect(r == .failure(.endOfFile))
                break
            }
            readBack += chunk[0..<n]
        }
        #expect(readBack == expected)

        // Appending through a second descriptor opened with .append.
        let appender = try File(path: path, options: [.writeOnly, .append])
        let tail = h.buffer(Array("!".utf8))
        #expect(try await_(loop) { try appender.write(loop: loop, completion: c, buffer: UnsafeRawBufferPointer(tail), callback: $0) } == .success(1))
        expected.append(UInt8(ascii: "!"))
        #expect(fileContent(file.fd) == expected)

        // Close both through the loop.
        for f in [file, appender] {
            var closed: Result<Void, EvError>?
            try f.close(loop: loop, completion: c) { _, r in closed = r; return .disarm }
            #expect(try runUntil(loop) { closed != nil })
            if case .failure(let e)? = closed { Issue.record("close failed: \(e)") }
            #expect(fcntl(f.fd, F_GETFD) < 0 || Fds.link(f.fd) != path)
        }
    }

    /// Opening a file that does not exist (here, in a directory that does not exist) is
    /// `.noSuchFile`: the path's own error, never the cancel's `.notFound`.
    @Test func openingAMissingFileIsNoSuchFile() {
        #expect(throws: EvError.noSuchFile) {
            _ = try File(path: temporaryPath("evloop-watcher-no-such-dir/none"))
        }
    }
}
