#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A socket address of any family the loop's sockets use: IPv4, IPv6, or a Unix domain
/// socket (a path in the file system, or a Linux abstract name), stored inline (no
/// allocation) in a `sockaddr_storage`.
///
/// Operations carry addresses by value; the loop copies them into memory owned by the
/// completion before the kernel sees them, because io_uring reads a connect's or a
/// sendmsg's address after the submitting call has returned.
///
/// Unix addresses: `SocketAddress(unixPath:)` names a socket file, and
/// `SocketAddress(abstractUnixName:)` a name in Linux's abstract namespace (no file: the name
/// disappears with the last socket bound to it, so nothing stale is ever left behind). An
/// address the kernel reports for a socket that was never bound (a `socketpair` end, an
/// unbound client) is *unnamed*. `description` prints each family the way people write it:
///
/// ```swift
/// try SocketAddress(ipv4: "127.0.0.1", port: 80).description     // "127.0.0.1:80"
/// try SocketAddress(ipv6: "::1", port: 80).description           // "[::1]:80"
/// try SocketAddress(unixPath: "/run/x.sock").description         // "unix:/run/x.sock"
/// try SocketAddress(abstractUnixName: "x").description           // "unix:@x"
/// ```
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    public var storage: sockaddr_storage
    public var length: socklen_t

    /// Wraps a raw address as the kernel filled it in (getsockname, getpeername, accept,
    /// recvmsg).
    ///
    /// The length is kept as the kernel gave it, with two corrections so that addresses
    /// compare equal whenever they name the same thing: it is capped at the size of the
    /// storage (a bogus length can never make `==` or `hash` read past it), and a Unix
    /// path address is measured up to its terminating NUL, plus the NUL (kernels differ in
    /// whether they count it). An unnamed Unix socket's address is just the family
    /// (length 2), and a datagram from an unnamed sender has no address at all (length 0).
    public init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        var length = min(Int(length), MemoryLayout<sockaddr_storage>.size)
        if length > Self.unixPathOffset, Int32(storage.ss_family) == AF_UNIX {
            let pathBytes = Self.unixPathBytes(of: storage, length: length)
            if let first = pathBytes.first, first != 0 {
                let n = pathBytes.firstIndex(of: 0) ?? pathBytes.count
                length = min(Self.unixPathOffset + n + 1, MemoryLayout<sockaddr_un>.size)
            }
        }
        self.length = socklen_t(length)
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

    /// The address family: AF_INET, AF_INET6 or AF_UNIX (AF_UNSPEC for an empty address,
    /// such as the sender of a datagram from an unnamed Unix socket).
    public var family: Int32 { length == 0 ? AF_UNSPEC : Int32(storage.ss_family) }

    /// The port, in host byte order; 0 for a family without ports (Unix).
    public var port: UInt16 {
        withUnsafeBytes(of: storage) { raw in
            switch family {
            case AF_INET6: return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
            case AF_INET: return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
            default: return 0
            }
        }
    }

    /// The numeric host ("127.0.0.1", "::1"); empty for a family without hosts (Unix: see
    /// `unixPath` and `abstractUnixName`).
    public var host: String {
        let family = self.family
        guard family == AF_INET || family == AF_INET6 else { return "" }
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

    /// "127.0.0.1:80", "[::1]:80", "unix:/run/x.sock", "unix:@name" (an abstract name; bytes
    /// other than printable ASCII are escaped as `\xNN`), "unix:(unnamed)" for a Unix socket that
    /// was never bound, "(no address)" for an empty one, and the family number otherwise.
    public var description: String {
        switch family {
        case AF_INET: return "\(host):\(port)"
        case AF_INET6: return "[\(host)]:\(port)"
        case AF_UNIX:
            if let path = unixPath { return "unix:" + path }
            if let name = abstractUnixNameBytes { return "unix:@" + Self.printable(name) }
            return "unix:(unnamed)"
        case AF_UNSPEC where length == 0: return "(no address)"
        default: return "address of family \(family) (\(length) bytes)"
        }
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

// MARK: - Unix domain addresses

extension SocketAddress {
    /// The most bytes a Unix socket path may have: `sun_path` holds 108 bytes, and the
    /// path needs its terminating NUL. (An abstract name may use all 107 bytes after its
    /// leading NUL; it has no terminator.)
    public static let maximumUnixPathLength = MemoryLayout<sockaddr_un>.size - unixPathOffset - 1

    /// Where `sun_path` starts in a `sockaddr_un` (after the 2-byte family).
    static var unixPathOffset: Int { MemoryLayout<sa_family_t>.size }

    /// The address of a Unix domain socket file at `path` (absolute, or relative to the
    /// working directory when the socket binds or connects).
    ///
    /// A path longer than `maximumUnixPathLength` bytes (UTF-8) throws `.nameTooLong`: it
    /// is never truncated, since a truncated path names another file. An empty path, or one
    /// containing a NUL byte, throws `.invalidArgument` (the kernel would read it as an
    /// unnamed or an abstract address instead).
    public init(unixPath path: String) throws(EvError) {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, !bytes.contains(0) else { throw .invalidArgument }
        guard bytes.count <= Self.maximumUnixPathLength else { throw .nameTooLong }
        // The NUL after the path is part of the address, as the kernel reports it.
        self.init(unixFamilyWith: bytes, length: Self.unixPathOffset + bytes.count + 1)
    }

    /// The address of `name` in Linux's abstract socket namespace (`sun_path` starts with a
    /// NUL byte, then the name; no file is created).
    ///
    /// Why use one: an abstract name exists only while a socket is bound to it, so a server
    /// that crashes leaves nothing to clean up, and no directory permissions are involved
    /// (anyone in the same network namespace can connect: check `peerCredentials()`). The
    /// name is its UTF-8 bytes, exactly (no terminator; NUL bytes are allowed). More than
    /// `maximumUnixPathLength` bytes throws `.nameTooLong`.
    public init(abstractUnixName name: String) throws(EvError) {
        let bytes = Array(name.utf8)
        guard bytes.count <= Self.maximumUnixPathLength else { throw .nameTooLong }
        self.init(unixFamilyWith: [0] + bytes, length: Self.unixPathOffset + 1 + bytes.count)
    }

    /// An AF_UNIX address whose `sun_path` starts with `pathBytes` (already validated).
    private init(unixFamilyWith pathBytes: [UInt8], length: Int) {
        var storage = sockaddr_storage()
        storage.ss_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage) { raw in
            let path = UnsafeMutableRawBufferPointer(rebasing: raw[Self.unixPathOffset...])
            path.copyBytes(from: pathBytes)
        }
        self.storage = storage
        self.length = socklen_t(length)
    }

    /// The socket file's path, for a Unix address that names one; nil for an abstract
    /// name, an unnamed socket, and the other families.
    public var unixPath: String? {
        guard family == AF_UNIX else { return nil }
        let bytes = Self.unixPathBytes(of: storage, length: Int(length))
        guard let first = bytes.first, first != 0 else { return nil }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The abstract name (without its leading NUL), for a Unix address in the abstract
    /// namespace; nil otherwise. Bytes that are not UTF-8 are replaced (U+FFFD).
    public var abstractUnixName: String? {
        abstractUnixNameBytes.map { String(decoding: $0, as: UTF8.self) }
    }

    /// Whether this is the address of a Unix socket that has no name (never bound: a
    /// `socketpair` end, an unbound client as its peer sees it).
    public var isUnnamedUnix: Bool {
        family == AF_UNIX && Int(length) <= Self.unixPathOffset
    }

    /// The abstract name's bytes, or nil when this is not an abstract Unix address.
    var abstractUnixNameBytes: [UInt8]? {
        guard family == AF_UNIX else { return nil }
        let bytes = Self.unixPathBytes(of: storage, length: Int(length))
        guard let first = bytes.first, first == 0 else { return nil }
        return Array(bytes.dropFirst())
    }

    /// The bytes of `sun_path` that `length` covers (never more than `sun_path` holds).
    static func unixPathBytes(of storage: sockaddr_storage, length: Int) -> [UInt8] {
        let end = min(length, MemoryLayout<sockaddr_un>.size)
        guard end > unixPathOffset else { return [] }
        return withUnsafeBytes(of: storage) { Array($0[unixPathOffset..<end]) }
    }

    /// `bytes` as one readable line: printable ASCII as it is, every other byte (control
    /// characters, a NUL inside an abstract name, non-ASCII, and the backslash itself) as
    /// `\xNN`, so that two different names never print the same.
    static func printable(_ bytes: [UInt8]) -> String {
        var out = ""
        for byte in bytes {
            if byte >= 0x20 && byte < 0x7f && byte != UInt8(ascii: "\\") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            }
        }
        return out
    }
}
