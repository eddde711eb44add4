#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A UDP socket (IPv4 or IPv6) that receives datagrams with their sender's address and
/// sends datagrams to an address, through an event loop (`receive` and `send` are
/// `DatagramSocket`'s, shared with Unix datagram sockets).
///
/// Like `TCPSocket`, the value only wraps the descriptor (close-on-exec, blocking mode as
/// the loop prefers) and never closes it implicitly.
///
/// ```swift
/// let udp = try UDPSocket(family: AF_INET, loop: loop)
/// try udp.bind(to: SocketAddress(ipv4: "127.0.0.1", port: 9000))
/// let receiving = Completion(), replying = Completion()
/// try udp.receive(loop: loop, completion: receiving, buffer: buffer) { _, result in
///     guard case .success(let message) = result else { return .disarm }
///     // echo it back (one reply in flight at a time: `replying` must be dead here)
///     try? udp.send(loop: loop, completion: replying,
///                   buffer: UnsafeRawBufferPointer(rebasing: buffer[..<message.count]),
///                   to: message.address) { _, _ in .disarm }
///     return .disarm   // rearm after the reply is sent, so the buffer is not overwritten
/// }
/// ```
public struct UDPSocket: DatagramSocket, Hashable {
    /// The socket descriptor.
    public let fd: Int32

    /// A received datagram: its size, sender and whether it was truncated.
    public typealias MessageCallback = (Completion, Result<ReceivedMessage, EvError>) -> CallbackAction
    /// A sent datagram: the bytes sent.
    public typealias CountCallback = (Completion, Result<Int, EvError>) -> CallbackAction
    /// Close.
    public typealias VoidCallback = (Completion, Result<Void, EvError>) -> CallbackAction

    /// Wraps an existing datagram socket descriptor.
    public init(fd: Int32) { self.fd = fd }

    /// Creates a UDP socket of `family` (`AF_INET` or `AF_INET6`), close-on-exec, blocking
    /// or non-blocking as `loop.prefersBlockingDescriptors` says.
    public init(family: Int32, loop: some EventLoop) throws(EvError) {
        fd = try SocketCalls.open(family: family, type: Int32(SOCK_DGRAM.rawValue),
                                  blocking: loop.prefersBlockingDescriptors)
    }

    /// Creates a socket of the family of `address`.
    public init(for address: SocketAddress, loop: some EventLoop) throws(EvError) {
        try self.init(family: address.family, loop: loop)
    }
}
