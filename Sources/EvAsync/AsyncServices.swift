#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop

// Awaitable forms of the services: the work pool, the resolver and connecting by name.
// Each performs the callback form's operation on the executor's loop (so it behaves the
// same on every backend) and resumes the awaiting task on the loop thread. Await them from
// code running on the loop's executor (see `LoopExecutor.perform`).
//
// Cancellation: cancelling the task cancels the operation. A job or lookup that has not
// started is withdrawn and the method throws `CancellationError`; a lookup in mid-flight is
// abandoned the same way; a job that has started cannot be stopped, so its real result is
// returned and the next await in the task throws `CancellationError`.
//
// Deadlines: each takes a `deadline` (`Deadline`, the callback forms' `Completion.deadline`);
// when it passes first, the method throws `EvError.timedOut` (a running job excepted, which
// returns its real result).

extension WorkPool {
    /// Runs `work` on a pool thread and returns its value (or throws the `EvError` it
    /// threw) on the loop thread, without blocking the loop meanwhile.
    ///
    /// `work` must not touch the loop (Swift's `@Sendable` checks what it captures). A task
    /// cancelled before the job started throws `CancellationError` and the closure never
    /// runs; after it started, the job runs to the end and its result is returned.
    /// `deadline` withdraws a job still queued when it passes (`EvError.timedOut`).
    nonisolated(nonsending)
    public func run<Value: Sendable>(_ work: @escaping @Sendable () throws(EvError) -> Value,
                                     deadline: Deadline = .none, on executor: LoopExecutor) async throws -> Value {
        try await WatcherAwait<Value>(executor: executor).run { completion, deliver throws(EvError) in
            completion.deadline = deadline
            try self.run(loop: executor.loopUnchecked, completion: completion, work) { _, result in
                deliver(result)
                return .disarm
            }
        }
    }
}

extension Resolver {
    /// Looks `host` up on the resolver's threads and returns its addresses, each with
    /// `port` (see `resolve(loop:completion:host:port:family:callback:)` for the order,
    /// the family filter and the typed errors: `.unknownHost`, `.nameResolutionFailed`).
    ///
    /// Cancelling the task, or `deadline` passing (`EvError.timedOut`), ends the await at
    /// once, even in mid-resolution: the lookup is abandoned and its late result dropped.
    nonisolated(nonsending)
    public func resolve(host: String, port: UInt16 = 0, family: Int32 = AF_UNSPEC, deadline: Deadline = .none,
                        on executor: LoopExecutor) async throws -> [SocketAddress] {
        try await WatcherAwait<[SocketAddress]>(executor: executor).run { completion, deliver throws(EvError) in
            completion.deadline = deadline
            try self.resolve(loop: executor.loopUnchecked, completion: completion, host: host, port: port,
                             family: family) { _, result in
                deliver(result)
                return .disarm
            }
        }
    }
}

extension TCPSocket {
    /// Connects to `host` by name: resolves it with `resolver`, tries each address in turn
    /// within one overall `deadline` (over the lookup and every attempt), and returns the
    /// connected socket (close it with `close(on:)`). Throws the resolver's error, the last
    /// attempt's error (such as `.connectionRefused`), `.timedOut`, or `CancellationError`
    /// when the task is cancelled; every socket not returned is closed.
    nonisolated(nonsending)
    public static func connect(host: String, port: UInt16, resolver: Resolver, family: Int32 = AF_UNSPEC,
                               deadline: Deadline = .none, on executor: LoopExecutor) async throws -> TCPSocket {
        try await WatcherAwait<TCPSocket>(executor: executor).run { completion, deliver throws(EvError) in
            completion.deadline = deadline
            try TCPSocket.connect(loop: executor.loopUnchecked, completion: completion, host: host, port: port,
                                  resolver: resolver, family: family) { _, result in
                deliver(result)
                return .disarm
            }
        }
    }

    /// Connects to the first of `addresses` that accepts, in order, within one overall
    /// `deadline` (the second half of the connect by name); same errors.
    nonisolated(nonsending)
    public static func connect(to addresses: [SocketAddress], deadline: Deadline = .none,
                               on executor: LoopExecutor) async throws -> TCPSocket {
        try await WatcherAwait<TCPSocket>(executor: executor).run { completion, deliver throws(EvError) in
            completion.deadline = deadline
            try TCPSocket.connect(loop: executor.loopUnchecked, completion: completion, to: addresses) { _, result in
                deliver(result)
                return .disarm
            }
        }
    }
}
