#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Wall-clock and CPU time, read together so a window's figures belong to the same interval.
public struct Sample: Sendable {
    /// CLOCK_MONOTONIC, nanoseconds.
    public var wallNanoseconds: UInt64
    /// User + system CPU time of the whole process (every thread), microseconds.
    public var cpuMicroseconds: UInt64
    /// Heap allocation calls so far (malloc, calloc, realloc, posix_memalign, ...), or nil
    /// when the counting shim is not loaded.
    public var allocations: UInt64?

    /// Reads the clocks and the allocation counter now.
    public static func now() -> Sample {
        // The allocation counter first, so the two clock reads are not counted inside a
        // window (they do not allocate anyway).
        let allocations = AllocationCounter.read()
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let wall = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
        return Sample(wallNanoseconds: wall, cpuMicroseconds: processCPUMicroseconds(), allocations: allocations)
    }
}

/// The figures of one measured window of `operations` operations.
public struct Window: Sendable {
    public var operations: UInt64
    public var seconds: Double
    public var cpuMicroseconds: UInt64
    public var allocations: UInt64?

    public init(from start: Sample, to end: Sample, operations: UInt64) {
        self.operations = operations
        self.seconds = Double(end.wallNanoseconds &- start.wallNanoseconds) / 1e9
        self.cpuMicroseconds = end.cpuMicroseconds &- start.cpuMicroseconds
        if let a = start.allocations, let b = end.allocations {
            self.allocations = b &- a
        } else {
            self.allocations = nil
        }
    }

    /// Operations per wall-clock second.
    public var rate: Double { seconds > 0 ? Double(operations) / seconds : 0 }
    /// CPU microseconds (user + system, all threads) per operation.
    public var cpuMicrosecondsPerOperation: Double {
        operations > 0 ? Double(cpuMicroseconds) / Double(operations) : 0
    }
    /// Heap allocations per operation, when counted.
    public var allocationsPerOperation: Double? {
        guard let allocations, operations > 0 else { return nil }
        return Double(allocations) / Double(operations)
    }
}

/// User + system CPU time of the process (all threads), in microseconds.
public func processCPUMicroseconds() -> UInt64 {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    let user = UInt64(usage.ru_utime.tv_sec) * 1_000_000 + UInt64(usage.ru_utime.tv_usec)
    let system = UInt64(usage.ru_stime.tv_sec) * 1_000_000 + UInt64(usage.ru_stime.tv_usec)
    return user + system
}

/// Peak resident set size of the process, in bytes.
public func peakResidentBytes() -> UInt64 {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return UInt64(usage.ru_maxrss) * 1024
}

/// Monotonic nanoseconds.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// The process-wide count of heap allocation calls, kept by the LD_PRELOAD shim
/// `Benchmarks/c/malloc_count.c` that `run.sh` builds and preloads.
///
/// Why a preloaded shim: glibc 2.34 removed `__malloc_hook`, and counting must see every
/// allocation of the process (the Swift runtime's, the library's, SwiftNIO's, libc's),
/// so the counter has to sit in front of malloc itself. The shim forwards to glibc's
/// `__libc_malloc` family and bumps one relaxed atomic per call; without it (the program
/// started by hand) the counts are reported as "n/a".
public enum AllocationCounter {
    private typealias ReadFunction = @convention(c) () -> UInt64

    private static let reader: ReadFunction? = {
        // RTLD_DEFAULT: search the global scope, where LD_PRELOAD put the shim.
        guard let symbol = dlsym(nil, "evbench_malloc_count") else { return nil }
        return unsafeBitCast(symbol, to: ReadFunction.self)
    }()

    /// True when the shim is loaded.
    public static var isAvailable: Bool { reader != nil }

    /// The number of allocation calls so far, or nil without the shim.
    @inline(__always)
    public static func read() -> UInt64? { reader?() }
}
