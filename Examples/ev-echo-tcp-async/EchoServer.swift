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
    /// How long a stopping server lets its connections finish echoing what they received
    /// (a client that reads nothing would otherwise hold it for ever).
    static let shutdownGrace: Duration = .seconds(5)

    /// Runs the server on `loop` (on this thread) until SIGINT or SIGTERM; returns the totals.
    ///
    /// A plain (nonisolated) function on purpose: top-level code and variables in main.swift
    /// are isolated to the main actor, and code on the loop that touched them would have to
    /// hop to a main-actor executor that nothing drains while the main thread runs the loop.
    static func serve(loop: LoopCore, listener: TCPSocket) throws -> TCPEchoStatistics {
        let executor = try LoopExecutor(loop)
        let statistics = LoopStatistics<TCPEchoStatistics>(executor: executor)

        try executor.run {
            let drain = ConnectionDrain(executor: executor)
            try await withThrowingTaskGroup(of: Void.self) { server in
                // The stop: on a signal, the drain (no more accepts; every connection ends
                // once it has echoed what it received, its client seeing end of file), then
                // the grace period; returns (by throwing) when that is over.
                server.addTask {
                    // The signals are blocked in every thread (main.swift), so they stay
                    // pending until this signalfd reads them, even if they came earlier.
                    let signals = try SignalWatcher(signals: [SIGINT, SIGTERM])
                    do {
                        let info = try await signals.wait(on: executor)
                        Report.say("received \(info.signal == SIGINT ? "SIGINT" : "SIGTERM"), shutting down")
                        var open = TCPEchoStatistics()
                        open.openAtShutdown = UInt64(await drain.begin())
                        await statistics.add(open)
                        try await executor.sleep(for: EchoServer.shutdownGrace)
                    } catch is CancellationError {
                        return   // every connection ended before the grace period did
                    }
                    throw ShutdownRequested()
                }
                // Accepts connections, one child task each, until the drain has ended them all.
                server.addTask {
                    await listener.serveConnections(program: "ev-echo-tcp-async", on: executor, drain: drain) { connection in
                        await EchoTask.run(connection, on: executor, statistics: statistics)
                    }
                }
                do {
                    try await server.next()
                } catch is ShutdownRequested {
                    // The grace period is over: cancel every connection still echoing.
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
            // The shutdown's grace period is over (the drain counted it as open at shutdown).
        } catch {
            ended.connectionsFailed = 1   // reset, broken pipe: this connection only
        }
        // Closing ignores cancellation, so a shutdown still closes every socket.
        try? await connection.close(on: executor)
        await statistics.add(ended)
    }
}
