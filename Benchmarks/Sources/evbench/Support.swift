#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import BenchSupport

/// What every benchmark needs to know about the run: the backend, and its name in results.
struct BenchSetup: Sendable {
    let backend: Backend

    /// "evloop/io_uring", "evloop/epoll", "evloop/poll".
    var implementation: String { "evloop/\(backend)" }

    /// A loop on exactly the requested backend (a benchmark never falls back silently).
    func openLoop() -> LoopCore {
        do {
            return try makeLoop(backend)
        } catch {
            BenchOutput.fail("backend \(backend) unavailable: \(error)")
        }
    }
}

/// Cancels whatever is still active and runs the loop dry, as a loop's deinit requires.
func drain(_ loop: some EventLoop) {
    loop.cancelAll()
    do { try loop.run(.untilDone) } catch { BenchOutput.fail("drain: \(error)") }
}

/// Runs `body`, turning a thrown error into a failed benchmark.
func check<T>(_ what: String, _ body: () throws -> T) -> T {
    do { return try body() } catch { BenchOutput.fail("\(what): \(error)") }
}

/// libxev's ping message.
enum Ping {
    static let text: [UInt8] = Array("PING\n".utf8)
    /// A copy in memory that never moves (the kernel may read it after `add` returns).
    /// nonisolated(unsafe): written once, by its initializer, and only read afterwards.
    nonisolated(unsafe) static let bytes: UnsafeRawBufferPointer = {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: text.count, alignment: 16)
        b.copyBytes(from: text)
        return UnsafeRawBufferPointer(b)
    }()
}

/// Counts "PING\n" messages in a byte stream that may split them anywhere (libxev's
/// `state` machine), and stops the program if any byte is not the expected one.
struct PingParser {
    private var state = 0

    /// Feeds `bytes`; returns how many whole messages they completed.
    @inline(__always)
    mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Int {
        var complete = 0
        for b in bytes {
            let expected = Self.expected(state)
            guard b == expected else {
                BenchOutput.fail("unexpected byte \(b) in the echo (expected \(expected))")
            }
            state += 1
            if state == 5 {
                state = 0
                complete += 1
            }
        }
        return complete
    }

    /// Byte `i` of "PING\n" (`Ping.text`), without the `swift_once` and bounds check of
    /// reading the `static let` array per byte.
    @inline(__always)
    private static func expected(_ i: Int) -> UInt8 {
        switch i {
        case 0: return 0x50 // P
        case 1: return 0x49 // I
        case 2: return 0x4E // N
        case 3: return 0x47 // G
        default: return 0x0A // \n
        }
    }
}

/// A loopback address with the kernel's choice of port.
func loopbackAnyPort() -> SocketAddress {
    check("address") { try SocketAddress(ipv4: "127.0.0.1", port: 0) }
}
