#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

/// The server's counters (`TCPEchoStatistics`), in an actor bound to the loop: connection
/// tasks update it with `await`, and because the actor's executor is the loop's (the tasks'
/// own executor), those calls run in place, with no thread switch and no lock.
actor EchoStatistics {
    let executor: LoopExecutor
    private(set) var totals = TCPEchoStatistics()

    init(executor: LoopExecutor) { self.executor = executor }

    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    func connectionEnded(bytes: Int, failed: Bool, cancelled: Bool) {
        totals.bytesEchoed += UInt64(bytes)
        if cancelled {
            totals.openAtShutdown += 1
        } else if failed {
            totals.connectionsFailed += 1
        } else {
            totals.connectionsServed += 1
        }
    }
}

/// Thrown by the signal task to end the server.
struct ShutdownRequested: Error {}

enum EchoServer {
    /// Runs the server on `loop` (on this thread) until SIGINT or SIGTERM; returns the totals.
    ///
    /// A plain (nonisolated) function on purpose: top-level code and variables in main.swift
    /// are isolated to the main actor, and code on the loop that touched them would have to
    /// hop to a main-actor executor that nothing drains while the main thread runs the loop.
    static func serve(loop: LoopCore, listener: TCPSocket) throws -> TCPEchoStatistics {
        let executor = try LoopExecutor(loop)
        let statistics = EchoStatistics(executor: executor)

        try executor.run {
            try await withThrowingTaskGroup(of: Void.self) { server in
                // Ends the server: returns (by throwing) when a signal arrives.
                server.addTask {
                    // The signals are blocked in every thread (main.swift), so they stay
                    // pending until this signalfd reads them, even if they came earlier.
                    let signals = try SignalWatcher(signals: [SIGINT, SIGTERM])
                    let info = try await signals.wait(on: executor)
                    Report.say("received \(info.signal == SIGINT ? "SIGINT" : "SIGTERM"), shutting down")
                    throw ShutdownRequested()
                }
                // Accepts connections, one child task each, until cancelled.
                server.addTask {
                    await withDiscardingTaskGroup { connections in
                        while let connection = await acceptNext(listener, on: executor) {
                            connections.addTask {
                                await EchoTask.run(connection, on: executor, statistics: statistics)
                            }
                        }
                    }
                }
                do {
                    try await server.next()
                } catch is ShutdownRequested {
                    // Expected: cancel everything below.
                }
                server.cancelAll()
                try await server.waitForAll()
            }
            try? await listener.close(on: executor)
        }

        executor.shutdown()
        try loop.run(.untilDone)
        return statistics.assumeIsolated { $0.totals }
    }

    /// The next connection, or nil once the server is cancelled (or accept fails for good).
    private static func acceptNext(_ listener: TCPSocket, on executor: LoopExecutor) async -> TCPSocket? {
        while true {
            do {
                let connection = try await listener.accept(on: executor)
                try? connection.setNoDelay(true)
                return connection
            } catch is CancellationError {
                return nil
            } catch EvError.connectionAborted {
                // The client gave up before we accepted it; take the next one.
                continue
            } catch EvError.systemResources {
                // Out of descriptors: retrying at once would spin. Back off, then retry;
                // connections wait in the listen backlog meanwhile.
                Report.warn("ev-echo-tcp-async: accept: out of descriptors; retrying in 100 ms")
                do { try await executor.sleep(for: .milliseconds(100)) } catch { return nil }
            } catch {
                Report.warn("ev-echo-tcp-async: accept failed: \(error)")
                return nil
            }
        }
    }
}

/// One connection's echo loop, as straight-line code.
enum EchoTask {
    static let bufferSize = 64 * 1024

    static func run(_ connection: TCPSocket, on executor: LoopExecutor, statistics: EchoStatistics) async {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        var echoed = 0
        var failed = false
        var cancelled = false
        do {
            while true {
                let n = try await connection.read(into: buffer, on: executor)
                try await connection.writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), on: executor)
                echoed += n
            }
        } catch EvError.endOfFile {
            // The client shut down its side: all echoed.
        } catch is CancellationError {
            cancelled = true
        } catch {
            failed = true   // reset, broken pipe: this connection only
        }
        // Closing ignores cancellation, so a shutdown still closes every socket.
        try? await connection.close(on: executor)
        await statistics.connectionEnded(bytes: echoed, failed: failed, cancelled: cancelled)
    }
}
