/// The kernel interfaces an EvLoop backend can be built on, in order of preference.
///
/// The umbrella module `Ev` detects which of these initializes on the running machine;
/// every loop reports the one it uses through `EventLoop.backend`.
public enum Backend: String, Sendable, CaseIterable, CustomStringConvertible {
    /// io_uring through liburing: native completions, one `io_uring_enter` per loop tick.
    case ioUring = "io_uring"
    /// epoll(7): readiness turned into completions by the loop.
    case epoll
    /// poll(2)/ppoll(2): the portable fallback, same readiness engine as epoll.
    case poll

    public var description: String { rawValue }

    /// Parses the names used by `EV_BACKEND` and `--backend` ("io_uring", "uring", "epoll", "poll").
    public init?(name: String) {
        switch name.lowercased() {
        case "io_uring", "iouring", "uring", "io-uring": self = .ioUring
        case "epoll": self = .epoll
        case "poll": self = .poll
        default: return nil
        }
    }
}
