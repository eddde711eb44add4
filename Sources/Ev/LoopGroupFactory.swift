extension LoopGroup where Loop == LoopCore {
    /// A group of `loops` loops, every one on exactly `backend` (made with `makeLoop(_:)`
    /// on its own thread when the group starts).
    ///
    /// A backend that cannot run here shows up when the group starts, as a `.makeLoop`
    /// failure of every loop; use `makeBestLoopGroup` to find out before, and to fall back.
    public convenience init(loops: Int, backend: Backend) throws(LoopGroupError) {
        try self.init(loops: loops) { _ throws(BackendUnavailable) in try makeLoop(backend) }
    }
}

/// A group of `loops` loops on the best backend for this machine, with the selection
/// (`makeBestLoop`'s rules: io_uring, then epoll, then poll; `backend` or `EV_BACKEND`
/// forces one, strictly).
///
/// Why it chooses up front: a group runs every loop on one backend, and choosing on each
/// thread could give one thread another backend (a transient EMFILE while probing io_uring).
/// So one probe loop is made here, on the calling thread, to choose (and to report why
/// better backends were skipped), and released at once; each thread then makes its own loop
/// on the chosen backend.
///
/// Throws `.invalidLoopCount` for zero loops (before probing anything) and
/// `.selectionFailed` with the `BackendSelectionError` when no backend can be used.
///
/// ```swift
/// let (group, selection) = try makeBestLoopGroup(loops: 4)
/// print("running on", selection)
/// try group.start { member in try armServer(on: member.loop) }
/// ```
public func makeBestLoopGroup(
    loops: Int,
    backend requested: Backend? = nil,
    environment: [String: String]? = nil
) throws(LoopGroupError) -> (group: LoopGroup<LoopCore>, selection: BackendSelection) {
    guard loops > 0 else { throw .invalidLoopCount(loops) }
    let selection: BackendSelection
    do {
        // The probe loop has nothing active, so releasing it right away is safe.
        selection = try makeBestLoop(backend: requested, environment: environment).selection
    } catch {
        throw .selectionFailed(error)
    }
    return (try LoopGroup(loops: loops, backend: selection.backend), selection)
}
