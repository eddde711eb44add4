/// Where a loop runs the reads and writes of a file opened for direct I/O (`.direct`,
/// O_DIRECT), and why: what `LoopCore.directIOPath(for:)` answers.
///
/// Why it is queryable: polled I/O (an io_uring set up with IORING_SETUP_IOPOLL, which
/// io2 uses for its direct I/O) saves the interrupt and the wake-up per read, but only a
/// block device with poll queues can do it (NVMe with `poll_queues`, for example); on
/// others an IOPOLL ring accepts the read and then fails it with EOPNOTSUPP (a virtio disk
/// with ext4, as on this project's machines). So the loop probes each device once and
/// falls back, and a program (or a benchmark) can see which path its I/O takes and why.
public enum DirectIOPath: Sendable, Hashable, CustomStringConvertible {
    /// io_uring's second ring, set up with IORING_SETUP_IOPOLL: the loop polls it for
    /// completions every tick (and does not sleep in its main wait while any is in flight).
    case polledRing
    /// io_uring's main ring, interrupt-driven; the reason says why not the polled ring.
    case mainRing(reason: String)
    /// The loop's file pool (epoll, poll): blocking pread/pwrite on its threads.
    case pool(reason: String)

    /// Why this path was chosen (empty for the polled ring, which needs no excuse).
    public var reason: String {
        switch self {
        case .polledRing: return "the device completes O_DIRECT reads on an IORING_SETUP_IOPOLL ring"
        case .mainRing(let reason), .pool(let reason): return reason
        }
    }

    public var description: String {
        switch self {
        case .polledRing: return "polled ring (\(reason))"
        case .mainRing(let reason): return "main ring (\(reason))"
        case .pool(let reason): return "file pool (\(reason))"
        }
    }
}
