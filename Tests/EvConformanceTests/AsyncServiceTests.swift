// Conformance: the awaitable forms of the services (EvAsync): work pool, resolver, connect
// by name, on every backend, loopback only.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: awaited services")
struct AsyncServiceTests {

    /// An awaited pool job returns its value (or throws its error) on the loop thread,
    /// having run off it.
    @Test(arguments: conformanceBackends)
    func awaitedWork(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let pool = try WorkPool(threads: 2)
            defer { pool.shutdown() }
            let loopThread = currentThreadID()
            let (worker, value, resumed, error) = try runAsync(executor) {
                let (worker, value) = try await pool.run({ () throws(EvError) -> (Int32, Int) in (currentThreadID(), 6 * 7) },
                                                         on: executor)
                let resumed = currentThreadID()
                var error: EvError?
                do {
                    _ = try await pool.run({ () throws(EvError) -> Int in throw .brokenPipe }, on: executor)
                } catch let e as EvError {
                    error = e
                }
                return (worker, value, resumed, error)
            }
            #expect(value == 42)
            #expect(worker != loopThread && resumed == loopThread)
            #expect(error == .brokenPipe)
            #expect(loop.activeCount == 0 || loop.activeCount == 1, "only the executor's wake-up may stay armed")
        }
    }

    /// A task cancelled while its job runs gets the job's real result (it cannot be
    /// stopped), and the next await throws `CancellationError`; one cancelled while its job
    /// waits in the queue throws `CancellationError` and the closure never runs.
    @Test(arguments: conformanceBackends)
    func cancellingAnAwaitedJob(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let pool = try WorkPool(threads: 1)
            defer { pool.shutdown() }
            let gate = Gate()
            let ran = Counter()
            let outcome = try runAsync(executor) {
                let running = Task(executorPreference: executor) { () async throws -> String in
                    let value = try await pool.run({ () throws(EvError) -> String in
                        gate.wait()
                        return "real"
                    }, on: executor)
                    do {
                        try await executor.sleep(for: .milliseconds(1))
                        return value + ", then not cancelled"
                    } catch is CancellationError {
                        return value + ", then cancelled"
                    }
                }
                let queued = Task(executorPreference: executor) { () async throws -> String in
                    try await pool.run({ () throws(EvError) -> String in
                        ran.add()
                        return "ran"
                    }, on: executor)
                }
                // Until the first job runs on the pool thread (not a fixed pause: on a
                // loaded machine the task may not have started its job within 30 ms).
                for _ in 0..<5000 where gate.waiters < 1 { try await executor.sleep(for: .milliseconds(1)) }
                try await executor.sleep(for: .milliseconds(5))
                running.cancel()
                queued.cancel()
                let second: String
                do {
                    second = try await queued.value
                } catch is CancellationError {
                    second = "cancelled"
                }
                gate.open()
                return [try await running.value, second]
            }
            #expect(outcome == ["real, then cancelled", "cancelled"])
            #expect(ran.count == 0)
        }
    }

    #if DEBUG   // Resolver.lookupDelayForTesting exists in debug builds only
    /// Awaited lookups: numeric, "localhost", an unknown host (typed), and a cancelled task
    /// in mid-resolution, which gives up at once.
    @Test(arguments: conformanceBackends)
    func awaitedLookups(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let resolver = try Resolver(threads: 1)
            defer { resolver.shutdown() }
            let (numeric, local, unknown) = try runAsync(executor) {
                let numeric = try await resolver.resolve(host: "[::1]", port: 5, on: executor)
                let local = try await resolver.resolve(host: "localhost", port: 6, on: executor)
                var unknown: EvError?
                do {
                    _ = try await resolver.resolve(host: "127.0.0.1", family: AF_INET6, on: executor)
                } catch let e as EvError {
                    unknown = e
                }
                return (numeric, local, unknown)
            }
            #expect(numeric == [try SocketAddress(ipv6: "::1", port: 5)])
            #expect(!local.isEmpty && local.allSatisfy { isLoopback($0) && $0.port == 6 })
            #expect(unknown == .unknownHost)

            resolver.lookupDelayForTesting = .seconds(2)
            let started = LoopInstant.now()
            let cancelled = try runAsync(executor) {
                let task = Task(executorPreference: executor) { () async throws -> [SocketAddress] in
                    try await resolver.resolve(host: "127.0.0.1", on: executor)
                }
                try await executor.sleep(for: .milliseconds(50))
                task.cancel()
                do {
                    _ = try await task.value
                    return false
                } catch is CancellationError {
                    return true
                }
            }
            #expect(cancelled)
            #expect(LoopInstant.now() - started < .seconds(1), "the cancelled await waited for the lookup")
        }
    }
    #endif

    /// An awaited connect by name reaches a local listener; to a closed port it throws
    /// `.connectionRefused`; to a list of addresses it takes the first that accepts.
    @Test(arguments: conformanceBackends)
    func awaitedConnectByName(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let resolver = try Resolver()
            defer { resolver.shutdown() }
            let targets = try LoopbackTargets(h)
            let (listening, refusing) = (targets.listening, targets.refusing)
            let (port, closedPort) = (listening.port, refusing.port)
            let (peer, fromList, refused) = try runAsync(executor) {
                let socket = try await TCPSocket.connect(host: "localhost", port: port, resolver: resolver,
                                                         family: AF_INET, deadline: .within(.seconds(10)), on: executor)
                let peer = try socket.peerAddress()
                try await socket.close(on: executor)
                let second = try await TCPSocket.connect(to: [refusing, listening], on: executor)
                let fromList = try second.peerAddress()
                try await second.close(on: executor)
                var refused: EvError?
                do {
                    _ = try await TCPSocket.connect(host: "127.0.0.1", port: closedPort, resolver: resolver, on: executor)
                } catch let e as EvError {
                    refused = e
                }
                return (peer, fromList, refused)
            }
            #expect(peer == listening && fromList == listening)
            #expect(refused == .connectionRefused)
        }
    }

    #if DEBUG   // Resolver.lookupDelayForTesting exists in debug builds only
    /// The awaited services take a deadline: a slow lookup and a connect that hangs throw
    /// `.timedOut` when it passes, without waiting for the lookup or the connect.
    @Test(arguments: conformanceBackends)
    func awaitedDeadlines(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let resolver = try Resolver(threads: 1)
            defer { resolver.shutdown() }
            resolver.lookupDelayForTesting = .seconds(2)
            let silent = try UnresponsiveListener()
            let hanging = silent.address
            let started = LoopInstant.now()
            let errors = try runAsync(executor) {
                var errors: [EvError?] = []
                do {
                    _ = try await resolver.resolve(host: "127.0.0.1", deadline: .within(.milliseconds(50)), on: executor)
                    errors.append(nil)
                } catch let e as EvError {
                    errors.append(e)
                }
                do {
                    _ = try await TCPSocket.connect(to: [hanging], deadline: .within(.milliseconds(50)), on: executor)
                    errors.append(nil)
                } catch let e as EvError {
                    errors.append(e)
                }
                return errors
            }
            #expect(errors == [.timedOut, .timedOut])
            #expect(LoopInstant.now() - started < .seconds(1), "a deadline waited for the lookup or the connect")
            withExtendedLifetime(silent) {}
        }
    }
    #endif
}
