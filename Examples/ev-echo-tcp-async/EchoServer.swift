#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

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
        let statistics = LoopStatistics<TCPEchoStatistics>(executor: executor)

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
                    await listener.serveConnections(program: "ev-echo-tcp-async", on: executor) { connection in
                        await EchoTask.run(connection, on: executor, statistics: statistics)
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
}

/// One connection's echo loop, as straight-line code.
enum EchoTask {
    static let bufferSize = 64 * 1024

    static func run(_ connection: TCPSocket, on executor: LoopExecutor, statistics: LoopStatistics<TCPEchoStatistics>) async {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        var ended = TCPEchoStatistics()
        do {
            while true {
                let n = try await connection.read(into: buffer, on: executor)
                try await connection.writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), on: executor)
                ended.bytesEchoed += UInt64(n)
            }
        } catch EvError.endOfFile {
            ended.connectionsServed = 1   // the client shut down its side: all echoed
        } catch is CancellationError {
            ended.openAtShutdown = 1
        } catch {
            ended.connectionsFailed = 1   // reset, broken pipe: this connection only
        }
        // Closing ignores cancellation, so a shutdown still closes every socket.
        try? await connection.close(on: executor)
        await statistics.add(ended)
    }
}
