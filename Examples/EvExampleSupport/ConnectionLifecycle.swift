import Ev

/// What a callback server's connection must have to be kept in a `ConnectionList`: its
/// position in the list, for O(1) removal.
public protocol ListedConnection: AnyObject {
    /// Where the connection is in its server's list; -1 when in none. Set by the list only.
    var slot: Int { get set }
}

/// The connections one loop of a callback example server owns (ev-echo-tcp, ev-http): the
/// list that keeps each alive while it is open, and that the server walks at shutdown.
///
/// Why a type: a connection is an object its own callbacks point to with `unowned`, so
/// something must own it until its last callback has run, and then let it go at once, in
/// O(1) among thousands (a removal swaps the last connection into the hole and updates its
/// `slot`). A connection removes itself (`remove`) once it is closed and idle.
public final class ConnectionList<Connection: ListedConnection> {
    public private(set) var all: [Connection] = []

    public init() {}

    public var count: Int { all.count }
    public var isEmpty: Bool { all.isEmpty }

    /// Keeps `connection` until `remove`.
    public func add(_ connection: Connection) {
        connection.slot = all.count
        all.append(connection)
    }

    /// Lets `connection` go (nothing if it is not in the list).
    public func remove(_ connection: Connection) {
        let i = connection.slot
        guard i >= 0, i < all.count, all[i] === connection else { return }
        let last = all.removeLast()
        if i < all.count {
            all[i] = last
            last.slot = i
        }
        connection.slot = -1
    }
}

/// The end of a callback server's connection: the close through the loop, which cancels
/// the operations still pending on the socket, and the bookkeeping of when the
/// connection's last callback has run (ev-echo-tcp and ev-http end the same way).
///
/// A connection calls `close` once it is done (every later call is ignored); the close's
/// callback, and every callback of an operation it cancelled, then call the connection's
/// `finishIfIdle`, which lets the connection go when `isClosing && !isCloseInFlight` and its
/// own operations have all called back. Until then the connection must stay alive: the
/// loop still holds its completions.
public final class ConnectionClose {
    private let program: String
    private let completion = Completion()
    /// `close` was called.
    public private(set) var isClosing = false
    /// The close has not called back yet.
    public private(set) var isCloseInFlight = false

    public init(program: String) { self.program = program }

    /// Closes `socket` through `loop` (once); `closed` runs when the close has called back.
    public func close(_ socket: some ConnectionSocket, loop: LoopCore, closed: @escaping () -> Void) {
        guard !isClosing else { return }
        isClosing = true
        isCloseInFlight = true
        do {
            try socket.close(loop: loop, completion: completion) { [unowned self] _, result in
                self.isCloseInFlight = false
                if case .failure(let e) = result { Report.warn("\(self.program): close: \(e)") }
                closed()
                return .disarm
            }
        } catch {
            // The completion is the close's own and used once: only a bug gets here.
            fatalError("\(program): close: \(error)")
        }
    }

    /// Reports a connection's failure unless it is the client's business (a reset, a
    /// broken pipe, a deadline), which ends that connection only and is counted, not told.
    public func note(_ error: EvError) {
        switch error {
        case .connectionReset, .brokenPipe, .timedOut:
            break
        default:
            Report.warn("\(program): connection error: \(error)")
        }
    }
}

/// A connection a callback server can end at shutdown: gracefully (send what is queued,
/// then close without a reset) or at once.
public protocol GracefullyEndingConnection: ListedConnection {
    /// Stops taking new work and ends the connection without a reset once what is queued
    /// has been sent.
    func finishGracefully()
    /// Closes now (the grace period is over).
    func abort()
}

/// A callback server's shutdown, written once for ev-echo-tcp and ev-http: stop accepting,
/// end every connection gracefully, and close those still open after a grace period (a
/// client that reads nothing would otherwise hold the loop, and the program, forever).
///
/// Why a type: the grace timer must be cancelled when the last connection goes first, or
/// the loop would wait for it; and a second stop (SIGINT after SIGTERM) must do nothing.
public final class ServerShutdown<Connection: GracefullyEndingConnection> {
    /// `begin` was called.
    public private(set) var isStopping = false
    private let grace: Duration?
    private let graceTimer = Completion()

    /// `grace`: how long the connections may take to end on their own; nil when each
    /// connection bounds its own ending (ev-echo-tcp's linger timer).
    public init(grace: Duration?) { self.grace = grace }

    /// Stops accepting (`stopAccepting`) and ends every connection of `connections`
    /// gracefully. Returns how many were open, or nil when shutdown had already begun.
    public func begin(
        _ connections: ConnectionList<Connection>, loop: LoopCore, stopAccepting: () -> Void
    ) -> Int? {
        guard !isStopping else { return nil }
        isStopping = true
        let open = connections.count
        stopAccepting()
        for c in connections.all { c.finishGracefully() }
        guard let grace, !connections.isEmpty else { return open }
        do {
            try loop.timer(graceTimer, after: grace) { _, _ in
                for c in connections.all { c.abort() }
                return .disarm
            }
        } catch {
            for c in connections.all { c.abort() }
        }
        return open
    }

    /// Call after a connection left `connections`: the last one gone at shutdown leaves the
    /// grace timer nothing to do, so it is cancelled and the loop can finish.
    public func connectionLeft(_ connections: ConnectionList<Connection>, loop: LoopCore) {
        if isStopping && connections.isEmpty && graceTimer.state == .active {
            try? loop.cancel(graceTimer, using: Completion())
        }
    }
}
