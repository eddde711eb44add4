#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev

/// One loop's listener and open connections, so that an async server can stop gracefully:
/// `begin()` stops accepting and lets every connection end as it does when its client
/// leaves, after answering what it has already received.
///
/// Why not just cancel the tasks: a cancelled task cannot await anything more (every await
/// throws at once), so a response being written would be cut off, and Swift has no way to
/// shield an await from cancellation. Instead `begin()` shuts down the read side
/// (shutdown(2), SHUT_RD) of the listener and of each connection. On Linux that wakes
/// whatever waits on the socket, on every backend (epoll and poll see it readable, and
/// io_uring's own poll of the socket fires): an accept then fails with EINVAL, and a read
/// returns what had already arrived and then end of file. So the idle keep-alive connection
/// (the usual one) ends at once with a clean end of stream for its client, and one in the
/// middle of a response ends after writing it. The write side is untouched. What is left
/// after the server's grace period (a client that reads nothing) is cancelled.
///
/// An actor bound to the loop's executor, like `LoopStatistics`: every task that uses it
/// runs on that loop, so its awaits run in place, with no thread switch and no lock.
public actor ConnectionDrain {
    let executor: LoopExecutor
    private var listeners: [Int32] = []
    /// Keyed by a number of their own, not the descriptor number: a connection's number
    /// may be reused by the next accept before the finished one is removed. (A `begin()`
    /// in that moment shuts down the reused number once more: another connection of this
    /// loop, being drained anyway, or, at worst, a descriptor that is no socket, for which
    /// shutdown(2) fails with ENOTSOCK and does nothing.)
    private var connections: [Int: Int32] = [:]
    private var nextKey = 0
    /// True from `begin()` on.
    public private(set) var isDraining = false
    /// How many connections were open when `begin()` ran (the summary's "open at shutdown").
    public private(set) var openWhenBegun = 0

    public init(executor: LoopExecutor) { self.executor = executor }

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Stops accepting and ends every connection's reading (see the type). Once only;
    /// returns how many connections were open.
    @discardableResult
    public func begin() -> Int {
        guard !isDraining else { return openWhenBegun }
        isDraining = true
        openWhenBegun = connections.count
        for fd in listeners { _ = shutdown(fd, Int32(SHUT_RD)) }
        for fd in connections.values { _ = shutdown(fd, Int32(SHUT_RD)) }
        return openWhenBegun
    }

    /// The listening socket `begin()` stops.
    func addListener(_ fd: Int32) {
        listeners.append(fd)
        if isDraining { _ = shutdown(fd, Int32(SHUT_RD)) }
    }

    /// A connection just accepted; one accepted after `begin()` (its accept had completed
    /// already) is shut down at once and counted with the others.
    /// Returns the key that `remove` takes.
    func add(fd: Int32) -> Int {
        let key = nextKey
        nextKey += 1
        connections[key] = fd
        if isDraining {
            openWhenBegun += 1
            _ = shutdown(fd, Int32(SHUT_RD))
        }
        return key
    }

    /// A connection whose task has ended (its socket closed).
    func remove(_ key: Int) {
        connections[key] = nil
    }
}
