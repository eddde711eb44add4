/// What every watcher that wraps a descriptor has (the sockets, `File`, `ByteStream`): the
/// descriptor, and a close that goes through the loop.
///
/// Why the close goes through the loop, and why it is written once here: a descriptor that
/// operations still wait on must not be closed behind the loop's back (a number reused by
/// the next open would receive their results, and epoll cannot even see such a close), so
/// the loop cancels those operations first (their callbacks report `.canceled`), withdraws
/// file-system work still queued for it on the file pool, and only then closes it, so the
/// other end sees the close at once (PITFALLS A11). The value only names the descriptor and
/// never closes it on its own.
public protocol LoopDescriptor: Sendable {
    /// The descriptor.
    var fd: Int32 { get }
}

extension LoopDescriptor {
    /// Closes the descriptor through the loop (see `LoopDescriptor`).
    public func close(loop: some EventLoop, completion: Completion,
                      callback: @escaping (Completion, Result<Void, EvError>) -> CallbackAction = { _, _ in .disarm })
        throws(EvError) {
        try completion.start(.close(fd: fd), on: loop, viewing: { $1.voidResult }, callback: callback)
    }
}
