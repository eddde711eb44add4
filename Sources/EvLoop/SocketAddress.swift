#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An IPv4 or IPv6 socket address, stored inline (no allocation) in a `sockaddr_storage`.
///
/// Operations carry addresses by value; the loop copies them into memory owned by the
/// completion before the kernel sees them, because io_uring reads a connect's or a
/// sendmsg's address after the submitting call has returned.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    public var storage: sockaddr_storage
    public var length: socklen_t

    /// Wraps a raw address as the kernel filled it in.
    public init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// An IPv4 address such as "127.0.0.1"; throws `.invalidArgument` if it does not parse.
    public init(ipv4 host: String, port: UInt16) throws(EvError) {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        let ok = host.withCString { inet_pton(AF_INET, $0, &sin.sin_addr) }
        guard ok == 1 else { throw .invalidArgument }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { dst in
            withUnsafeBytes(of: sin) { dst.copyMemory(from: $0) }
        }
        self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in>.size))
    }

    /// An IPv6 address such as "::1"; throws `.invalidArgument` if it does not parse.
    public init(ipv6 host: String, port: UInt16) throws(EvError) {
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        let ok = host.withCString { inet_pton(AF_INET6, $0, &sin6.sin6_addr) }
        guard ok == 1 else { throw .invalidArgument }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { dst in
            withUnsafeBytes(of: sin6) { dst.copyMemory(from: $0) }
        }
        self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in6>.size))
    }

    /// A numeric IPv4 or IPv6 address ("127.0.0.1", "::1", "[::1]"), without any lookup:
    /// a name, "localhost" included, is `.invalidArgument`. Names go through `Resolver`,
    /// which does not block the loop and knows what the machine calls "localhost" (one or
    /// both of 127.0.0.1 and ::1, from /etc/hosts) instead of guessing 127.0.0.1.
    public init(host: String, port: UInt16) throws(EvError) {
        var h = host
        if h.hasPrefix("["), h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        if h.contains(":") {
            try self.init(ipv6: h, port: port)
        } else {
            try self.init(ipv4: h, port: port)
        }
    }

    /// The address family: AF_INET or AF_INET6.
    public var family: Int32 { Int32(storage.ss_family) }

    /// The port, in host byte order.
    public var port: UInt16 {
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
            }
            return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
        }
    }

    /// The numeric host ("127.0.0.1", "::1").
    public var host: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                var a = raw.load(as: sockaddr_in6.self).sin6_addr
                _ = inet_ntop(AF_INET6, &a, &buffer, socklen_t(buffer.count))
            } else {
                var a = raw.load(as: sockaddr_in.self).sin_addr
                _ = inet_ntop(AF_INET, &a, &buffer, socklen_t(buffer.count))
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String {
        family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Calls `body` with a `sockaddr` pointer and length for a system call.
    public func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        try withUnsafeBytes(of: storage) { raw in
            try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
        }
    }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool {
        guard a.length == b.length else { return false }
        return withUnsafeBytes(of: a.storage) { ra in
            withUnsafeBytes(of: b.storage) { rb in
                memcmp(ra.baseAddress!, rb.baseAddress!, Int(a.length)) == 0
            }
        }
    }

    public func hash(into hasher: inout Hasher) {
        withUnsafeBytes(of: storage) { hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: $0.prefix(Int(length)))) }
    }
}
