/// Why a backend could not be initialized on this machine.
///
/// Runtime selection (`makeBestLoop()`, in Ev) collects one of these for every backend it had
/// to skip, so a program can say *why* it runs on epoll rather than io_uring (a sysctl,
/// a seccomp filter, an old kernel) instead of falling back silently.
public struct BackendUnavailable: Error, Sendable, CustomStringConvertible {
    public var backend: Backend
    /// A human-readable reason, including the errno and, for io_uring, the
    /// `kernel.io_uring_disabled` value when it could be read.
    public var reason: String
    /// The errno that made setup fail, if one did.
    public var errno: Int32?

    public init(backend: Backend, reason: String, errno: Int32? = nil) {
        self.backend = backend
        self.reason = reason
        self.errno = errno
    }

    public var description: String { "\(backend) unavailable: \(reason)" }
}
