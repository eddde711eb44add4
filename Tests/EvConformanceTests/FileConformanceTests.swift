// Conformance: regular files (PITFALLS D9, I4, E1). Readiness backends run these on their
// thread pool, io_uring in the kernel; the results must be identical. Every test runs
// unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: files")
struct FileConformanceTests {

    /// Runs one operation to completion and returns its result.
    private func perform(_ loop: LoopCore, _ op: Operation, sourceLocation: SourceLocation = #_sourceLocation) throws -> CompletionResult? {
        var result: CompletionResult?
        try loop.add(Completion(op) { _, r in result = r; return .disarm })
        #expect(try runUntil(loop) { result != nil }, "\(op.kind) did not complete", sourceLocation: sourceLocation)
        return result
    }

    /// pwrite and pread at absolute offsets, including past the end (a hole reads as
    /// zeros) and several in flight at once.
    @Test(arguments: conformanceBackends)
    func preadAndPwriteAtOffsets(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let fd = h.own(try makeTempFile())
        let pieces: [(UInt64, String)] = [(0, "hello"), (4096, "world"), (10_000, "tail"), (5, ", ")]
        var results: [CompletionResult] = []
        for (offset, text) in pieces {
            let b = h.buffer(Array(text.utf8))
            try loop.add(Completion(.pwrite(fd: fd, buffer: UnsafeRawBufferPointer(b), offset: offset)) { _, r in
                results.append(r)
                return .disarm
            })
        }
        #expect(try runUntilDone(loop))
        // All four were in flight at once, so they may complete in any order.
        #expect(results.compactMap(\.count).sorted() == [2, 4, 5, 5], "\(results)")
        let content = fileContent(fd)
        #expect(content.count == 10_004)
        if content.count == 10_004 {
            #expect(Array(content[0..<7]) == Array("hello, ".utf8))
            #expect(Array(content[4096..<4101]) == Array("world".utf8))
            #expect(Array(content[10_000...]) == Array("tail".utf8))
            #expect(content[100..<4096].allSatisfy { $0 == 0 })
        }

        // Reads at offsets, several in flight at once.
        let reads: [(UInt64, Int, String)] = [(4096, 5, "world"), (0, 7, "hello, "), (10_000, 4, "tail"), (9_998, 4, "\0\0ta")]
        var got: [Int: [UInt8]] = [:]
        for (i, (offset, count, _)) in reads.enumerated() {
            let b = h.buffer(count, fill: 0xEE)
            try loop.add(Completion(.pread(fd: fd, buffer: b, offset: offset)) { _, r in
                got[i] = Array(b[0..<(r.count ?? 0)])
                return .disarm
            })
        }
        #expect(try runUntilDone(loop))
        for (i, (_, _, text)) in reads.enumerated() {
            #expect(got[i] == Array(text.utf8), "read \(i)")
        }
        // A read that straddles the end is short.
        let b = h.buffer(100)
        let short = try perform(loop, .pread(fd: fd, buffer: b, offset: 10_001))
        #expect(short?.count == 3)
        #expect(Array(b[0..<3]) == Array("ail".utf8))
    }

    /// PITFALLS I4: sequential `.write`s (each after the previous completed) append at
    /// the current position, in order; sequential `.read`s then read it back in order
    /// and end with `.endOfFile`.
    @Test(.tags(.pitfallI4), arguments: conformanceBackends)
    func sequentialWritesAppendInOrder(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let fd = h.own(try makeTempFile())
        let chunks = (0..<100).map { Array("chunk \($0) of 100;".utf8) }
        let expected = chunks.flatMap { $0 }
        let source = h.buffer(expected)
        var offset = 0, next = 0
        var errors: [CompletionResult] = []
        let chunkEnd = { (k: Int) in chunks[0...k].reduce(0) { $0 + $1.count } }
        let w = Completion(.write(fd: fd, buffer: UnsafeRawBufferPointer(rebasing: source[0..<chunks[0].count]))) { c, r in
            guard let n = r.count, n > 0 else { errors.append(r); return .disarm }
            offset += n
            if offset >= chunkEnd(next) { next += 1 }
            guard next < chunks.count else { return .disarm }
            c.operation = .write(fd: fd, buffer: UnsafeRawBufferPointer(rebasing: source[offset..<chunkEnd(next)]))
            return .rearm
        }
        try loop.add(w)
        #expect(try runUntilDone(loop))
        #expect(errors.isEmpty, "\(errors)")
        #expect(fileContent(fd) == expected)
        #expect(lseek(fd, 0, SEEK_CUR) == off_t(expected.count), "the writes moved the file position")

        // Read back from the start with the current-position read.
        #expect(lseek(fd, 0, SEEK_SET) == 0)
        let rb = h.buffer(64)
        var back: [UInt8] = []
        var last: CompletionResult?
        try loop.add(Completion(.read(fd: fd, buffer: rb)) { _, r in
            guard let n = r.count else { last = r; return .disarm }
            back += rb[0..<n]
            return .rearm
        })
        #expect(try runUntilDone(loop))
        #expect(back == expected)
        #expect(last?.error == .endOfFile, "\(String(describing: last))")
    }

    /// Reads at the end of a file report `.endOfFile` (current position and absolute
    /// offsets, at and beyond the size, and on an empty file).
    @Test(.tags(.pitfallD9), arguments: conformanceBackends)
    func readsAtTheEndReportEndOfFile(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let fd = h.own(try makeTempFile())
        let buf = h.buffer(16)
        #expect(try perform(loop, .read(fd: fd, buffer: buf))?.error == .endOfFile, "empty file")
        #expect(try perform(loop, .pread(fd: fd, buffer: buf, offset: 0))?.error == .endOfFile, "empty file")
        let data = h.buffer(Array("0123456789".utf8))
        #expect(try perform(loop, .write(fd: fd, buffer: UnsafeRawBufferPointer(data)))?.count == 10)
        #expect(try perform(loop, .read(fd: fd, buffer: buf))?.error == .endOfFile, "position at the end")
        #expect(try perform(loop, .pread(fd: fd, buffer: buf, offset: 10))?.error == .endOfFile)
        #expect(try perform(loop, .pread(fd: fd, buffer: buf, offset: 1 << 40))?.error == .endOfFile)
        #expect(try perform(loop, .pread(fd: fd, buffer: buf, offset: 6))?.count == 4)
    }

    /// PITFALLS D9: a zero-length read into an empty buffer is `success(0)`, not an end of
    /// file (even at the end of the file); zero-length writes are `success(0)`.
    @Test(.tags(.pitfallD9), arguments: conformanceBackends)
    func zeroLengthIOIsSuccessZero(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let fd = h.own(try makeTempFile())
        let empty = h.buffer(0)
        #expect(empty.count == 0 && empty.baseAddress != nil)
        for op in [Operation.read(fd: fd, buffer: empty), .pread(fd: fd, buffer: empty, offset: 0),
                   .pread(fd: fd, buffer: empty, offset: 100)] {
            let r = try perform(loop, op)
            guard case .read(.success(0))? = r else { Issue.record("\(op.kind): \(String(describing: r))"); continue }
        }
        for op in [Operation.write(fd: fd, buffer: UnsafeRawBufferPointer(empty)),
                   .pwrite(fd: fd, buffer: UnsafeRawBufferPointer(empty), offset: 50)] {
            let r = try perform(loop, op)
            guard case .write(.success(0))? = r else { Issue.record("\(op.kind): \(String(describing: r))"); continue }
        }
        #expect(fileContent(fd).isEmpty)
    }
}
