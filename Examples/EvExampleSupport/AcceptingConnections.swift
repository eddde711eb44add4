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
                Report.warn("\(program): accept: out of descriptors; retrying in 100 ms")
                do { try await executor.sleep(for: .milliseconds(100)) } catch { return nil }
            } catch {
                Report.warn("\(program): accept failed: \(error)")
                return nil
            }
        }
    }
}
