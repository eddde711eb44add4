#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import BenchSupport

/// EvLoop's file benchmark (issue 17): 4 KiB random reads of one file opened with O_DIRECT,
/// `depth` reads in flight at once (queue depth 1 and 32 in run.sh), on the loop's
/// backend: io_uring on the ring its probe picks (the polled IOPOLL ring where the device
/// supports it, else the main ring; the implementation name and the output say which and
/// why), epoll and poll on their thread pool. fio (--ioengine=io_uring --direct=1
/// --rw=randread --bs=4k --iodepth=N) is the floor in the same run (run.sh).
///
/// Each read is a `pread` into its own 4 KiB `AlignedBuffer` at a random block-aligned
/// offset (a seeded generator: every run reads the same offsets); its callback picks the
/// next offset and rearms. Figure: reads per second (IOPS) over the steady-state window
/// after `warmup` reads, with the process's CPU time per read.
///
/// The file is created when it is missing or shorter than `size` (written once with
/// O_DIRECT, 1 MiB at a time, then fsync'd); it is left in place for the next run.
enum FileRandomReads {
    static let blockSize = 4096

    final class State {
        var done = 0
        var issued = 0
        var start: Sample?
        var end: Sample?
        var random: UInt64 = 0x9E37_79B9_7F4A_7C15
        var failure: EvError?
    }

    static func run(_ setup: BenchSetup, path: String, size: Int, depth: Int, count: Int, warmup: Int) {
        prepare(path: path, size: size)
        let loop = setup.openLoop()
        let file: File
        do {
            file = try File(path: path, options: [.readOnly, .direct])
        } catch {
            BenchOutput.fail("open \(path) with O_DIRECT: \(error) (a file system without O_DIRECT, such as an old tmpfs?)")
        }
        let route = loop.directIOPath(for: file)
        let impl: String
        switch route {
        case .polledRing: impl = "\(setup.implementation)/polled-ring"
        case .mainRing: impl = "\(setup.implementation)/main-ring"
        case .pool: impl = "\(setup.implementation)/pool"
        }
        BenchOutput.say("files-randread-qd\(depth) [\(impl)]: direct I/O path: \(route)")
        let blocks = UInt64(size / blockSize)
        let total = count + warmup
        let state = State()
        let buffers: [AlignedBuffer] = (0..<depth).map { _ in
            do { return try AlignedBuffer(byteCount: blockSize) } catch { BenchOutput.fail("AlignedBuffer: \(error)") }
        }
        func nextOffset() -> UInt64 {
            // xorshift64*: cheap, and the same sequence every run.
            state.random ^= state.random >> 12
            state.random ^= state.random << 25
            state.random ^= state.random >> 27
            return (state.random &* 0x2545_F491_4F6C_DD1D) % blocks * UInt64(blockSize)
        }
        let completions: [Completion] = (0..<depth).map { i in
            let buffer = buffers[i].bytes
            let c = Completion(.pread(fd: file.fd, buffer: buffer, offset: 0)) { c, result in
                guard case .read(.success(let n)) = result, n == blockSize else {
                    state.failure = result.error ?? .errno(EIO)
                    return .disarm
                }
                state.done += 1
                if state.done == warmup { state.start = Sample.now() }
                if state.done == total { state.end = Sample.now() }
                guard state.issued < total else { return .disarm }
                state.issued += 1
                c.operation = .pread(fd: file.fd, buffer: buffer, offset: nextOffset())
                return .rearm
            }
            c.operation = .pread(fd: file.fd, buffer: buffer, offset: nextOffset())
            return c
        }
        if warmup == 0 { state.start = Sample.now() }
        for c in completions.prefix(total) {
            state.issued += 1
            check("add") { try loop.add(c) }
        }
        check("loop") { try loop.run(.untilDone) }
        if let failure = state.failure { BenchOutput.fail("a read failed: \(failure)") }
        guard let start = state.start, let end = state.end else { BenchOutput.fail("files-randread did not finish") }
        let window = Window(from: start, to: end, operations: UInt64(count))
        BenchOutput.result(bench: "files-randread-qd\(depth)", impl: impl, value: window.rate, unit: "reads/s",
                           window: window, opName: "read",
                           extra: [("depth", String(depth)), ("file_mb", String(size >> 20)), ("block", String(blockSize))])
        _ = Glibc.close(file.fd)
        withExtendedLifetime((buffers, completions)) {}
    }

    /// Makes `path` at least `size` bytes of non-zero data (so reads hit allocated blocks).
    static func prepare(path: String, size: Int) {
        var st = stat()
        if stat(path, &st) == 0, Int(st.st_size) >= size { return }
        let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC | File.OpenOptions.direct.rawValue, 0o644)
        guard fd >= 0 else { BenchOutput.fail("create \(path) with O_DIRECT failed (errno \(errno))") }
        defer { close(fd) }
        let chunk = 1 << 20
        let buffer: AlignedBuffer
        do { buffer = try AlignedBuffer(byteCount: chunk) } catch { BenchOutput.fail("AlignedBuffer: \(error)") }
        for i in 0..<chunk { buffer.bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        var offset = 0
        while offset < size {
            let n = min(chunk, size - offset)
            guard pwrite(fd, buffer.bytes.baseAddress, n, off_t(offset)) == n else {
                BenchOutput.fail("writing \(path) failed (errno \(errno))")
            }
            offset += n
        }
        _ = fsync(fd)
    }
}
