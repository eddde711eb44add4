/// How long `EventLoop.run(_:)` keeps going.
///
/// - `noWait`: poll once without blocking, deliver whatever has completed, return.
/// - `once`: block until at least one completion has been delivered, then return.
/// - `untilDone`: keep running until no completion is active (or `stop()` is called).
public enum RunMode: Sendable, Equatable {
    case noWait
    case once
    case untilDone
}
