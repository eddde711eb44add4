/// What every datagram socket watcher (`UDPSocket`, `UnixSocket` of kind `.datagram`) has:
/// `receive` of one datagram with its sender, and `send` of one datagram to an address.
///
/// Why a protocol: UDP and Unix datagrams go through the same recvmsg/sendmsg operations on
/// every backend (io_uring has no recvfrom/sendto, and recvmsg reports both the sender and
/// truncation the same way everywhere, PITFALLS I3), so the two operations are written once
/// here, as `ConnectionSocket` writes the stream half once for TCP and Unix streams.
///
/// Rules for both: a datagram larger than the buffer is truncated (`truncated` is true and
/// `count` is the buffer's size); an empty datagram is a 0-byte message (a datagram socket
/// has no end of stream); a sender that never bound a name (a Unix socket) has no address.
/// The address of a send is copied into the completion, so the caller's `SocketAddress`
/// need not outlive the call.
public protocol DatagramSocket: LoopSocket {}

extension DatagramSocket {
    /// Receives one datagram into `buffer`, reporting its size, its sender and whether its
    /// tail was cut off.
    public func receive(loop: some EventLoop, completion: Completion, buffer: UnsafeMutableRawBufferPointer,
                        callback: @escaping (Completion, Result<ReceivedMessage, EvError>) -> CallbackAction) throws(EvError) {
        try completion.start(.recvmsg(socket: fd, buffer: buffer), on: loop,
                             viewing: { c, result in result.message(of: c) }, callback: callback)
    }

    /// Sends `buffer` as one datagram to `address` (nil: to the connected peer). A Unix
    /// path nobody is bound to is `.noSuchFile` (or `.connectionRefused` for a stale socket
    /// file); a Unix receiver whose queue is full makes the send wait.
    public func send(loop: some EventLoop, completion: Completion, buffer: UnsafeRawBufferPointer,
                     to address: SocketAddress?,
                     callback: @escaping (Completion, Result<Int, EvError>) -> CallbackAction) throws(EvError) {
        try completion.start(.sendmsg(socket: fd, buffer: buffer, address: address), on: loop,
                             viewing: { $1.countResult }, callback: callback)
    }
}
