/// Creates a loop on exactly `backend`, or explains why that backend cannot run here.
///
/// The returned `LoopCore` is the loop type programs use when the backend is chosen at
/// runtime: every backend subclasses it, so calls cost the same as on the concrete type
/// (only the backend hooks are dynamically dispatched).
public func makeLoop(_ backend: Backend) throws(BackendUnavailable) -> LoopCore {
    switch backend {
    case .ioUring: return try UringLoop()
    case .epoll: return try EpollLoop()
    case .poll: return try PollLoop()
    }
}
