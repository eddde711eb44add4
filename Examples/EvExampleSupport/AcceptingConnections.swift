import Ev

extension ConnectionSocket {
    /// The next connection of this listening socket for an async example server, or nil
    /// once the task is cancelled (the server is stopping) or accepting fails for good; the
    /// connection has TCP_NODELAY set when it is a TCP socket (responses go out at once:
    /// Nagle would hold a small one for the client's ACK).
    ///
    /// Why not `connections(on:)`: that sequence ends at the first error, and a server must
    /// survive two: a client that gave up between its SYN and the accept
    /// (`.connectionAborted`, skipped), and running out of descriptors (`.systemResources`,
    /// EMFILE or ENFILE), which leaves the connection in the backlog, so accepting again at
    /// once would spin the loop at 100 % CPU (PITFALLS E8): it waits 100 ms first. The
    /// callback servers' `ConnectionAcceptor` does the same.
    nonisolated(nonsending)
    public func acceptNextConnection(program: String, on executor: LoopExecutor) async -> Self? {
        await acceptNextConnection(program: program, on: executor, reportsErrors: true)
    }

    /// `acceptNextConnection(program:on:)`; with `reportsErrors == false` the retries and
    /// the failure are silent (one of several accepts in flight on the same listener:
    /// `serveConnections` lets only the first one report, the others would repeat it).
    nonisolated(nonsending)
    func acceptNextConnection(program: String, on executor: LoopExecutor, reportsErrors: Bool,
                              drain: ConnectionDrain? = nil) async -> Self? {
        while true {
            do {
                let connection = try await accept(on: executor)
                if let tcp = connection as? TCPSocket { try? tcp.setNoDelay(true) }
                return connection
            } catch is CancellationError {
                return nil
            } catch EvError.connectionAborted {
                continue
            } catch EvError.systemResources {
                if reportsErrors { Report.warn("\(program): accept: out of descriptors; retrying in 100 ms") }
                do { try await executor.sleep(for: .milliseconds(100)) } catch { return nil }
            } catch {
                // After the drain began, the listener's shutdown makes accept fail (EINVAL):
                // the stop, not a failure.
                if let drain, await drain.isDraining { return nil }
                if reportsErrors { Report.warn("\(program): accept failed: \(error)") }
                return nil
            }
        }
    }

    /// Serves every connection of this listening socket in a child task of its own
    /// (`serve` gets the connection, TCP_NODELAY set, and must close it), with
    /// `acceptsInFlight` awaited accepts waiting on the listener at once; returns once the
    /// calling task is cancelled, or `drain` has begun (the graceful stop, see
    /// `ConnectionDrain`), or accepting failed for good, and every connection's task has
    /// ended.
    ///
    /// Why several accepts: the loop delivers one completion of an operation per tick (an
    /// operation started in a callback is reported on the next tick, so that nothing can
    /// starve I/O), and a server with one accept in flight admits one connection per tick.
    /// When hundreds of clients connect at once (wrk -c500 does), the last one waits
    /// hundreds of ticks in the backlog, each tick also serving every connection admitted
    /// so far: its first request waited up to a second on a loaded machine, and those
    /// first requests were the 99th percentile of a short benchmark run. With
    /// `acceptsInFlight` accepts waiting, a readiness backend tries every one of them when
    /// the listener becomes readable (io_uring has as many accepts queued in the kernel),
    /// so a burst is admitted `acceptsInFlight` connections per tick. (On epoll and poll an
    /// acceptor's next accept, after one that succeeded, is tried before it waits, and a
    /// connection already in the backlog then returns without suspending, up to 64 in a
    /// row: docs/ASYNC.md, "Awaitable operations".)
    ///
    /// Each accept runs in an acceptor task of its own with its own discarding group of
    /// connection tasks (a child task cannot add tasks to its parent's group); all of them
    /// inherit the caller's executor preference. Only the first acceptor reports errors.
    nonisolated(nonsending)
    public func serveConnections(program: String, on executor: LoopExecutor,
                                 acceptsInFlight: Int = Self.defaultAcceptsInFlight,
                                 drain: ConnectionDrain? = nil,
                                 _ serve: @escaping @Sendable (Self) async -> Void) async {
        precondition(acceptsInFlight >= 1, "serveConnections needs at least one accept in flight")
        await drain?.addListener(fd)
        await withDiscardingTaskGroup { acceptors in
            for index in 0..<acceptsInFlight {
                acceptors.addTask {
                    await withDiscardingTaskGroup { connections in
                        while let client = await self.acceptNextConnection(
                            program: program, on: executor, reportsErrors: index == 0, drain: drain) {
                            connections.addTask {
                                let key = await drain?.add(fd: client.fd)
                                await serve(client)
                                if let key { await drain?.remove(key) }
                            }
                        }
                    }
                }
            }
        }
    }

    /// How many accepts `serveConnections` keeps waiting on a listener by default: a burst
    /// of 500 connections gets in within 8 ticks instead of 500.
    public static var defaultAcceptsInFlight: Int { 64 }
}
