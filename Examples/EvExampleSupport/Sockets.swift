#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev

/// Socket set-up the examples share: the parts that happen once, before the loop runs.
///
/// Descriptor mode follows the loop: io_uring waits inside the kernel and prefers blocking
/// descriptors, the readiness backends (epoll, poll) need O_NONBLOCK so a spurious wake-up
/// can never block the loop thread (`EventLoop.prefersBlockingDescriptors`).
public enum Sockets {
    /// A system call failed; `call` names it.
    public struct Failure: Error, CustomStringConvertible {
        public var call: String
        public var errno: Int32
        public var description: String {
            "\(call): \(ExampleProcess.errnoName(errno)) (\(String(cString: strerror(errno))))"
        }
    }

    @inline(__always)
    private static func check(_ r: Int32, _ call: String) throws(Failure) {
        if r < 0 { throw Failure(call: call, errno: errno) }
    }

    /// A new socket of `type` (SOCK_STREAM or SOCK_DGRAM) for `family`, close-on-exec,
    /// non-blocking unless `blocking`.
    public static func make(family: Int32, type: __socket_type, blocking: Bool) throws(Failure) -> Int32 {
        var flags = Int32(type.rawValue | SOCK_CLOEXEC.rawValue)
        if !blocking { flags |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = socket(family, flags, 0)
        try check(fd, "socket")
        return fd
    }

    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ label: String) throws(Failure) {
        var v = value
        try check(setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)), "setsockopt(\(label))")
    }

    /// A socket bound to `address` with SO_REUSEADDR and, when `reusePort`, SO_REUSEPORT
    /// (several sockets, one per loop thread, then share the port and the kernel spreads
    /// connections or datagrams across them, with no lock and no hand-off between threads).
    /// For SOCK_STREAM it also listens with `backlog`.
    public static func bound(_ address: SocketAddress, type: __socket_type, backlog: Int32,
                             reusePort: Bool, blocking: Bool) throws(Failure) -> Int32 {
        let fd = try make(family: address.family, type: type, blocking: blocking)
        do {
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
            if reusePort { try setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT") }
            if address.family == AF_INET6 {
                // Serve exactly the address asked for ("::1"), not IPv4 too.
                try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY")
            }
            let r = address.withSockAddr { bind(fd, $0, $1) }
            try check(r, "bind \(address)")
            if type == SOCK_STREAM { try check(listen(fd, backlog), "listen") }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// The local address of a bound socket (the port the kernel picked for port 0).
    public static func localAddress(_ fd: Int32) throws(Failure) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        try check(r, "getsockname")
        return SocketAddress(storage: storage, length: length)
    }

    /// Sets or clears O_NONBLOCK.
    public static func setBlocking(_ fd: Int32, _ blocking: Bool) throws(Failure) {
        let flags = fcntl(fd, F_GETFL)
        try check(flags, "fcntl(F_GETFL)")
        let wanted = blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK
        if wanted != flags { try check(fcntl(fd, F_SETFL, wanted), "fcntl(F_SETFL)") }
    }
}
