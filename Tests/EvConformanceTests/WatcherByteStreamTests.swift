// Watchers: ByteStream (issue 12): pipes (read, write through a WriteQueue, end of
// file), a stream over a socket (recv/send, shutdown), and a child's stdin, stdout and
// stderr through the pipes `Subprocess.spawn` creates. Every test runs on every backend.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

/// Reads `stream` through the loop until end of file, collecting the bytes (or the first
/// error other than end of file).
final class StreamCollector {
    var bytes: [UInt8] = []
    var ended = false
    var error: EvError?
    let completion = Completion()

    init(_ stream: ByteStream, loop: LoopCore, buffer: UnsafeMutableRawBufferPointer) throws(EvError) {
        try stream.read(loop: loop, completion: completion, buffer: buffer) { [unowned self] _, result in
            switch result {
            case .success(let n):
                bytes += buffer[..<n]
                return .rearm
            case .failure(.endOfFile):
                ended = true
            case .failure(let e):
                error = e
            }
            return .disarm
        }
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }
    var done: Bool { ended || error != nil }
}

/// Closes `streams` through the loop and waits for every close.
func closeThroughLoop(_ streams: [ByteStream], loop: LoopCore, harness h: Harness,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
    var closed = 0
    for s in streams {
        try s.close(loop: loop, completion: Completion()) { _, r in
            if case .failure(let e) = r { Issue.record("close: \(e)", sourceLocation: sourceLocation) }
            closed += 1
            return .disarm
        }
    }
    #expect(try runUntil(loop) { closed == streams.count }, sourceLocation: sourceLocation)
    for s in streams { h.forget(s.fd) }
}

/// Whether no descriptor of this process refers to any of `links` ("pipe:[inode]",
/// "socket:[inode]"): a check that survives descriptor numbers being reused at once by
/// tests running in parallel.
private func noneOpen(_ links: [String]) -> Bool {
    let open = Set(Fds.table().values)
    return links.allSatisfy { !open.contains($0) }
}

@Suite("Watcher: ByteStream and child stdio")
struct WatcherByteStreamTests {

    /// A pipe from `ByteStream.pipe`: both ends close-on-exec and in the loop's preferred
    /// mode; 300 KB written through a `WriteQueue` (more than a pipe holds, so writes wait
    /// and are cut short and resumed) arrive whole and in order; closing the write end
    /// gives the reader `.endOfFile`; afterwards neither end is open.
    @Test(arguments: conformanceBackends)
    func pipeCarriesBytesAndEndOfFile(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (readEnd, writeEnd) = try ByteStream.pipe(loop: loop)
        h.own(readEnd.fd)
        h.own(writeEnd.fd)
        #expect(!readEnd.isSocket && !writeEnd.isSocket)
        for end in [readEnd, writeEnd] {
            #expect(Sock.isCloseOnExec(end.fd))
            #expect(Sock.isNonBlocking(end.fd) == !loop.prefersBlockingDescriptors)
        }
        #expect(try ByteStream(fd: readEnd.fd) == readEnd, "fstat tells a pipe from a socket")
        let links = [readEnd.fd, writeEnd.fd].compactMap { Fds.link($0) }

        let size = 300_000
        let payload = h.buffer((0..<size).map { patternByte($0, seed: 9) })
        let queue = WriteQueue(stream: writeEnd)
        #expect(!queue.isSocket)
        var written: Result<Int, EvError>?
        let request = WriteRequest(buffer: UnsafeRawBufferPointer(payload)) { _, r in
            written = r
            return .disarm
        }
        try queue.enqueue(loop: loop, request)
        let reader = try StreamCollector(readEnd, loop: loop, buffer: h.buffer(16384))
        #expect(try runUntil(loop, timeout: .seconds(10)) { written != nil })
        #expect(written == .success(size))
        try closeThroughLoop([writeEnd], loop: loop, harness: h)
        #expect(try runUntil(loop) { reader.done })
        #expect(reader.ended && reader.error == nil, "\(String(describing: reader.error))")
        #expect(reader.bytes == Array(payload))
        try closeThroughLoop([readEnd], loop: loop, harness: h)
        #expect(links.count == 2 && noneOpen(links), "a pipe end is still open")
    }

    /// A ByteStream over a socket uses recv/send: bytes reach the peer, `shutdown(.write)`
    /// gives the peer end of file while this end still reads, and the peer's close is this
    /// end's `.endOfFile`. On a pipe, shutdown is the kernel's ENOTSOCK.
    @Test(arguments: conformanceBackends)
    func streamOverASocketShutsDownItsWriteSide(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (ours, theirs) = try UnixSocket.pair(loop: loop)
        h.own(ours.fd)
        h.own(theirs.fd)
        let stream = ByteStream(ours)
        #expect(stream.isSocket)
        #expect(try ByteStream(fd: ours.fd) == stream)
        var wrote: Result<Int, EvError>?
        try stream.write(loop: loop, completion: Completion(), buffer: UnsafeRawBufferPointer(h.buffer(Array("ping".utf8)))) { _, r in
            wrote = r
            return .disarm
        }
        #expect(try runUntil(loop) { wrote != nil })
        #expect(wrote == .success(4))
        var shut: Result<Void, EvError>?
        try stream.shutdown(loop: loop, completion: Completion(), how: .write) { _, r in shut = r; return .disarm }
        #expect(try runUntil(loop) { shut != nil })
        #expect(shut?.errorValue == nil)
        Sock.setNonBlocking(theirs.fd, true)
        #expect(Sock.take(theirs.fd, 4) == Array("ping".utf8))
        #expect(Sock.seesEndOfFile(theirs.fd, timeoutMs: 2000), "the peer did not see the write side shut down")

        try Sock.put(theirs.fd, "pong")
        h.close(theirs.fd)
        let reader = try StreamCollector(stream, loop: loop, buffer: h.buffer(64))
        #expect(try runUntil(loop) { reader.done })
        #expect(reader.text == "pong" && reader.ended)

        let (pipeRead, pipeWrite) = try ByteStream.pipe(loop: loop)
        h.own(pipeRead.fd)
        h.own(pipeWrite.fd)
        var pipeShut: Result<Void, EvError>?
        try pipeWrite.shutdown(loop: loop, completion: Completion()) { _, r in pipeShut = r; return .disarm }
        #expect(try runUntil(loop) { pipeShut != nil })
        #expect(pipeShut?.errorValue == .errno(ENOTSOCK))
    }

    /// A child's stdin, stdout and stderr as pipes (`StdioTarget.pipe`): the parent gets
    /// loop-ready ends (close-on-exec, in the loop's mode) and holds nothing else of the
    /// pipes (the child's ends are closed in the parent at once); what the parent writes to
    /// stdin the child reads until the parent closes it, and the child's stdout and stderr
    /// arrive separately, each ending with end of file when the child exits.
    @Test(arguments: processCases)
    func childStdioThroughPipes(backend: Backend, method: ExitWatchMethod) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let script = "tr a-z A-Z; echo \"to stderr\" >&2; exit 4"
        let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", script],
                                         stdin: .pipe, stdout: .pipe, stderr: .pipe, exitWatch: method, loop: loop)
        guard let input = child.standardInput, let output = child.standardOutput, let errors = child.standardError else {
            Issue.record("spawn with .pipe targets returned no parent ends")
            return
        }
        let ends = [input, output, errors]
        for end in ends {
            h.own(end.fd)
            #expect(!end.isSocket && end.fd > 2)
            #expect(Sock.isCloseOnExec(end.fd))
            #expect(Sock.isNonBlocking(end.fd) == !loop.prefersBlockingDescriptors)
            // A pipe's two ends share one inode: one reference means the child's end is
            // not open in the parent.
            #expect(Fds.references(to: end.fd) == 1, "the child's end of descriptor \(end.fd) is still open in the parent")
        }
        let links = ends.compactMap { Fds.link($0.fd) }

        let out = try StreamCollector(output, loop: loop, buffer: h.buffer(4096))
        let err = try StreamCollector(errors, loop: loop, buffer: h.buffer(4096))
        let text = String(repeating: "hello through a pipe\n", count: 2000)   // 42 KB
        let queue = WriteQueue(stream: input)
        var wrote: Result<Int, EvError>?
        try queue.enqueue(loop: loop, WriteRequest(buffer: UnsafeRawBufferPointer(h.buffer(Array(text.utf8)))) { _, r in
            wrote = r
            return .disarm
        })
        #expect(try runUntil(loop, timeout: .seconds(10)) { wrote != nil })
        #expect(wrote == .success(text.utf8.count))
        try closeThroughLoop([input], loop: loop, harness: h)   // the child reads end of file

        var exit: Result<Subprocess.ExitStatus, EvError>?
        try child.wait(loop: loop, completion: Completion()) { _, r in exit = r; return .disarm }
        #expect(try runUntil(loop, timeout: .seconds(10)) { out.done && err.done && exit != nil })
        #expect(out.ended && err.ended)
        #expect(out.text == text.uppercased())
        #expect(err.text == "to stderr\n")
        #expect(exit == .success(.exited(4)))
        try closeThroughLoop([output, errors], loop: loop, harness: h)
        #expect(links.count == 3 && noneOpen(links), "a pipe end is still open")
    }

    /// The child of a spawn with pipes holds exactly its three pipe ends as 0, 1 and 2 and
    /// nothing else of the parent's (not the parent's ends, not the loop's descriptors):
    /// it lists its own /proc/self/fd into its stdout pipe.
    @Test(.tags(.pitfallH4), arguments: conformanceBackends)
    func childHoldsOnlyItsPipeEnds(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let child = try Subprocess.spawn(path: "/bin/ls", arguments: ["-l", "/proc/self/fd/"],
                                         stdin: .pipe, stdout: .pipe, stderr: .pipe, loop: loop)
        let ends = [child.standardInput, child.standardOutput, child.standardError].compactMap { $0 }
        #expect(ends.count == 3)
        for end in ends { h.own(end.fd) }
        guard ends.count == 3 else { return }
        let listing = try StreamCollector(ends[1], loop: loop, buffer: h.buffer(4096))
        var exit: Result<Subprocess.ExitStatus, EvError>?
        try child.wait(loop: loop, completion: Completion()) { _, r in exit = r; return .disarm }
        #expect(try runUntil(loop, timeout: .seconds(10)) { listing.done && exit != nil })
        #expect(exit == .success(.exited(0)))
        var childFds: [Int: String] = [:]
        for line in listing.text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard let arrow = parts.firstIndex(of: "->"), arrow > 0, arrow + 1 < parts.count,
                  let n = Int(parts[arrow - 1]) else { continue }
            childFds[n] = parts[(arrow + 1)...].joined(separator: " ")
        }
        // The child's 0, 1, 2 are the same pipes as the parent's ends.
        for (i, end) in ends.enumerated() {
            #expect(childFds[i] != nil && childFds[i] == Fds.link(end.fd), "child descriptor \(i): \(String(describing: childFds[i]))")
        }
        for (fd, target) in childFds where fd > 2 {
            #expect(target.hasPrefix("/proc/"), "descriptor \(fd) -> \(target) leaked into the child")
        }
        try closeThroughLoop(ends, loop: loop, harness: h)
    }

    /// Bad input to a spawn with pipes is refused with its own error: `.pipe` without the
    /// loop that will use the parent ends is `.invalidArgument` (before anything is made),
    /// and a program that does not exist, by path or searched in PATH, is `.noSuchFile`.
    /// That the pipes made for a failed spawn are closed again is proven by the descriptor
    /// count of `UnixAndStreamDescriptorTests`, in a process of its own.
    @Test(arguments: conformanceBackends)
    func spawnWithPipesRefusesBadInput(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        #expect(throws: EvError.invalidArgument) {
            _ = try Subprocess.spawn(path: "/bin/true", stdout: .pipe)
        }
        #expect(throws: EvError.noSuchFile) {
            _ = try Subprocess.spawn(path: "/nonexistent/evloop-no-such-program",
                                     stdin: .pipe, stdout: .pipe, stderr: .pipe, loop: loop)
        }
        #expect(throws: EvError.noSuchFile) {
            _ = try Subprocess.spawn(path: "evloop-no-such-program-\(getpid())", searchPath: true,
                                     stdout: .pipe, loop: loop)
        }
    }
}
