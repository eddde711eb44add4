#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension TCPSocket {
    /// Connects to `host` by name: resolves it with `resolver`, then tries each address in
    /// turn (getaddrinfo's order: the most likely to work first) until one accepts, all
    /// within one overall deadline (`completion.deadline`), and hands the connected socket
    /// to the callback.
    ///
    /// Why one call: a name has several addresses (IPv6 and IPv4, several servers), and
    /// any of them may refuse or be unreachable; trying them one by one, closing each
    /// failed socket and keeping one deadline over the lookup and all attempts, is what
    /// every client needs and easy to get subtly wrong (a socket leaked on the timeout path,
    /// a connect that succeeds just after its cancel).
    ///
    /// The outcome, exactly once: `.success` with the connected socket (close-on-exec,
    /// blocking or not as `loop` prefers); `.unknownHost` or another resolution error; the
    /// error of the *last* address tried when none accepted (`.connectionRefused`,
    /// `.unreachable`...); `.timedOut` when the deadline passed first; `.canceled` when
    /// `completion` was cancelled. Every socket it opened and does not hand over is closed
    /// through the loop (right after the callback, on a timeout or cancel: `run(.untilDone)`
    /// waits for that). `.rearm` connects again, from the lookup on (a `.within` deadline
    /// starts again).
    ///
    /// The deadline is the completion's, as for every operation (`Completion.deadline`,
    /// `.none` by default: no limit), and covers the lookup and every attempt. While it
    /// connects, `completion` carries that deadline as its operation (a timer): cancel it as
    /// any operation, with `loop.cancel(completion, using:)`. Addresses are tried one after
    /// the other, not raced (no Happy Eyeballs): an address that swallows its SYN costs the
    /// attempt's whole wait, so set a deadline when that matters.
    ///
    /// Throws `.completionActive` while `completion` is in flight, and `.invalidArgument`
    /// (before anything starts) for an empty host or a family other than `AF_UNSPEC`,
    /// `AF_INET` and `AF_INET6`.
    ///
    /// ```swift
    /// let resolver = try Resolver()
    /// let connecting = Completion()
    /// connecting.deadline = .within(.seconds(5))      // the lookup and every attempt
    /// try TCPSocket.connect(loop: loop, completion: connecting, host: "localhost", port: 8080,
    ///                       resolver: resolver) { _, result in
    ///     guard case .success(let socket) = result else { return .disarm }
    ///     startTalking(socket)
    ///     return .disarm
    /// }
    /// ```
    public static func connect(loop: some EventLoop, completion: Completion, host: String, port: UInt16,
                               resolver: Resolver, family: Int32 = AF_UNSPEC,
                               callback: @escaping SocketCallback) throws(EvError) {
        guard completion.state == .dead else { throw .completionActive }
        let name = try Resolver.checkedHost(host)
        guard family == AF_UNSPEC || family == AF_INET || family == AF_INET6 else { throw .invalidArgument }
        HostConnector(loop: loop, completion: completion,
                      target: .name(name, port: port, family: family, resolver: resolver),
                      callback: callback).begin()
    }

    /// Connects to the first of `addresses` that accepts, trying them in order within one
    /// overall deadline (`completion.deadline`): the second half of the connect by name,
    /// for addresses found some other way. Same outcome and rules; throws
    /// `.invalidArgument` for an empty list.
    public static func connect(loop: some EventLoop, completion: Completion, to addresses: [SocketAddress],
                               callback: @escaping SocketCallback) throws(EvError) {
        guard completion.state == .dead else { throw .completionActive }
        guard !addresses.isEmpty else { throw .invalidArgument }
        HostConnector(loop: loop, completion: completion, target: .addresses(addresses), callback: callback).begin()
    }
}

/// One connect by name (or to a list of addresses): the lookup, the attempts one after
/// another, and the deadline over them (see `TCPSocket.connect(loop:completion:host:...)`).
///
/// How it is built, on the public loop API only: the caller's completion is a timer at the
/// deadline (the one `Completion.deadline` names; the far future without one), so it is
/// active for the whole connect, counted, cancellable and cancelled by
/// `cancelAll()` like any operation. The lookup and the connects run on the connector's
/// own completions; when they reach an outcome the timer is moved to *now*
/// (`resetTimer`), and its callback, on the next tick, hands the outcome over. A timer
/// that fires on its own is the deadline; a cancelled one is the caller's cancel. Either
/// way the connector then stops what is in flight (cancels the lookup, closes the socket,
/// which cancels its connect) and reports `.timedOut` or `.canceled`.
///
/// Lifetime: the caller's completion holds the connector through its callback; each of
/// the connector's own completions holds it through `userData` while active (taken back in
/// its callback), so the connector lives exactly as long as something of it is in flight,
/// and no reference cycle outlives the connect.
final class HostConnector {
    enum Target {
        case name(String, port: UInt16, family: Int32, resolver: Resolver)
        case addresses([SocketAddress])
    }

    private enum Phase {
        /// The lookup or an attempt is in flight.
        case working
        /// An outcome is waiting for the caller's timer to fire.
        case decided(Result<TCPSocket, EvError>)
        /// The outcome was handed over (or the deadline or a cancel ended it).
        case over
    }

    /// The callbacks run only inside `loop.run`, so the loop is alive whenever it is used;
    /// a strong reference would keep it alive through a completion the caller keeps.
    private unowned let loop: any EventLoop
    /// The caller's completion (it holds this connector through its callback).
    private unowned let completion: Completion
    private let target: Target
    private let callback: TCPSocket.SocketCallback

    private var phase = Phase.working
    private var addresses: [SocketAddress] = []
    /// The socket of the attempt in flight, until it is handed over or its close issued.
    private var socket: TCPSocket?
    private var lastError: EvError?
    /// The lookup, then each connect.
    private let step = Completion()
    /// Closes the sockets of failed or abandoned attempts.
    private let closer = Completion()
    /// Cancels the lookup when the connect is given up.
    private let canceller = Completion()

    init(loop: any EventLoop, completion: Completion, target: Target, callback: @escaping TCPSocket.SocketCallback) {
        self.loop = loop
        self.completion = completion
        self.target = target
        self.callback = callback
    }

    /// Arms the deadline on the caller's completion and starts the lookup (or the first
    /// attempt). The caller checked that the completion is dead and the arguments valid.
    func begin() {
        // The completion's deadline, for the whole connect (a timer ignores it otherwise).
        let deadline: LoopInstant
        switch completion.deadline {
        case .none: deadline = .distantFuture
        case .at(let instant): deadline = instant
        case .within(let duration): deadline = loop.now + max(duration, .zero)
        }
        completion.operation = .timer(deadline: deadline)
        completion.callback = { [self] c, result in handOver(c, result) }
        do {
            try loop.add(completion)
        } catch {
            preconditionFailure("EvLoop: connecting by name with a completion in flight: \(error)")
        }
        switch target {
        case .addresses(let list):
            addresses = list
            attempt(0)
        case .name(let host, let port, let family, let resolver):
            step.userData = self
            do {
                try resolver.resolve(loop: loop, completion: step, host: host, port: port, family: family) { c, result in
                    Self.take(c).resolved(result)
                    return .disarm
                }
            } catch {
                step.userData = nil
                decide(.failure(error))
            }
        }
    }

    /// The connector a completion of its own carried while active.
    private static func take(_ c: Completion) -> HostConnector {
        let connector = unsafeDowncast(c.userData.unsafelyUnwrapped, to: HostConnector.self)
        c.userData = nil
        return connector
    }

    private var isWorking: Bool {
        if case .working = phase { return true }
        return false
    }

    private func resolved(_ result: Result<[SocketAddress], EvError>) {
        guard isWorking else { return }   // given up meanwhile; nothing was opened
        switch result {
        case .success(let list):
            addresses = list
            attempt(0)
        case .failure(let error):
            decide(.failure(error))
        }
    }

    /// Tries address `index`, or reports the last error when none is left.
    private func attempt(_ index: Int) {
        guard isWorking else { return }
        guard index < addresses.count else {
            decide(.failure(lastError ?? .unknownHost))
            return
        }
        let address = addresses[index]
        let s: TCPSocket
        do {
            s = try TCPSocket(for: address, loop: loop)
        } catch {
            // This family cannot be used here (EAFNOSUPPORT), or no descriptor is left:
            // the next address may still work.
            lastError = error
            attempt(index + 1)
            return
        }
        socket = s
        step.userData = self
        do {
            try s.connect(loop: loop, completion: step, to: address) { c, result in
                Self.take(c).attemptEnded(index, result)
                return .disarm
            }
        } catch {
            // The step is idle between attempts; only a broken invariant lands here.
            preconditionFailure("EvLoop: a connect attempt's completion was in flight: \(error)")
        }
    }

    private func attemptEnded(_ index: Int, _ result: Result<Void, EvError>) {
        // Given up meanwhile: the socket's close (which cancelled this connect) is issued.
        guard isWorking, let s = socket else { return }
        switch result {
        case .success:
            socket = nil
            decide(.success(s))
        case .failure(let error):
            lastError = error
            close(s) { connector in connector.attempt(index + 1) }
        }
    }

    /// Closes `s` through the loop (cancelling anything still waiting on it), then `next`.
    private func close(_ s: TCPSocket, then next: @escaping (HostConnector) -> Void = { _ in }) {
        if socket == s { socket = nil }
        closer.userData = self
        do {
            try s.close(loop: loop, completion: closer) { c, result in
                // A `cancelAll()` that caught the close before it ran leaves the descriptor
                // open; nothing waits on it any more, so close it directly.
                if case .failure(.canceled) = result { _ = Glibc.close(s.fd) }
                next(Self.take(c))
                return .disarm
            }
        } catch {
            // The closer is idle whenever a socket is open (one attempt at a time).
            preconditionFailure("EvLoop: closing an attempt's socket with a completion in flight: \(error)")
        }
    }

    /// Records the outcome and moves the caller's timer to now, so its callback hands the
    /// outcome over on the next tick. A timer whose own result is already pending (it
    /// expired, or was cancelled, this tick) is left alone: its callback decides.
    private func decide(_ outcome: Result<TCPSocket, EvError>) {
        phase = .decided(outcome)
        guard completion.state == .active, !completion.resultReady else { return }
        do {
            try loop.resetTimer(completion, deadline: loop.now)
        } catch {
            preconditionFailure("EvLoop: moving the connect's deadline timer failed: \(error)")
        }
    }

    /// The caller's timer fired (moved to now by `decide`, or at the deadline) or was
    /// cancelled: hand the outcome over, exactly once.
    private func handOver(_ c: Completion, _ result: CompletionResult) -> CallbackAction {
        let outcome: Result<TCPSocket, EvError>
        switch (phase, result.voidResult) {
        case (.decided(let decided), .success):
            outcome = decided
        case (.decided(.success(let s)), .failure(let error)):
            // Connected, but cancelled before the hand-over: the caller never sees it.
            close(s)
            outcome = .failure(error)
        case (_, .success):
            outcome = .failure(.timedOut)
        case (_, .failure(let error)):
            outcome = .failure(error)
        }
        phase = .over
        giveUp()
        let action = callback(c, outcome)
        guard action == .rearm else { return .disarm }
        // Connect again, from the lookup on, with the deadline started again and a fresh
        // connector (this one may still be closing a socket).
        HostConnector(loop: loop, completion: c, target: target, callback: callback).begin()
        return .disarm
    }

    /// Stops what is still in flight after the outcome was handed over: the lookup is
    /// cancelled (abandoned if it runs), the attempt's socket closed.
    private func giveUp() {
        if step.state == .active, step.kind == .work, canceller.state == .dead {
            try? loop.cancel(step, using: canceller)   // a dead canceller is never refused
        }
        if let s = socket { close(s) }
    }
}
