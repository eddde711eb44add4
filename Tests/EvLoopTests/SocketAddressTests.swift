#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import EvLoop

/// SocketAddress parses numeric IPv4/IPv6 text without DNS, and round-trips through the
/// kernel's sockaddr form.
@Suite struct SocketAddressTests {
    @Test func ipv4() throws {
        let a = try SocketAddress(ipv4: "127.0.0.1", port: 8080)
        #expect(a.family == AF_INET)
        #expect(a.port == 8080)
        #expect(a.host == "127.0.0.1")
        #expect(a.description == "127.0.0.1:8080")
        #expect(Int(a.length) == MemoryLayout<sockaddr_in>.size)
        a.withSockAddr { ptr, len in
            #expect(Int32(ptr.pointee.sa_family) == AF_INET)
            #expect(len == a.length)
        }
        #expect(try SocketAddress(ipv4: "0.0.0.0", port: 0).port == 0)
        #expect(try SocketAddress(ipv4: "255.255.255.255", port: 65535).port == 65535)
    }

    @Test func ipv6() throws {
        let a = try SocketAddress(ipv6: "::1", port: 443)
        #expect(a.family == AF_INET6)
        #expect(a.port == 443)
        #expect(a.host == "::1")
        #expect(a.description == "[::1]:443")
        #expect(Int(a.length) == MemoryLayout<sockaddr_in6>.size)
        #expect(try SocketAddress(ipv6: "fe80::1:2", port: 1).host == "fe80::1:2")
        #expect(try SocketAddress(ipv6: "::ffff:127.0.0.1", port: 1).host == "::ffff:127.0.0.1")
    }

    @Test func hostPicksTheFamily() throws {
        #expect(try SocketAddress(host: "[::1]", port: 1).family == AF_INET6)
        #expect(try SocketAddress(host: "::1", port: 1).family == AF_INET6)
        #expect(try SocketAddress(host: "10.1.2.3", port: 1).host == "10.1.2.3")
    }

    @Test(arguments: ["", "abc", "256.0.0.1", "1.2.3", "1.2.3.4.5", "127.0.0.1 ", "example.com", "localhost", "::g", "[::1"])
    func invalidTextIsInvalidArgument(_ text: String) {
        #expect(throws: EvError.invalidArgument) { try SocketAddress(host: text, port: 1) }
    }

    @Test func familySpecificInitializersRefuseTheOtherFamily() {
        #expect(throws: EvError.invalidArgument) { try SocketAddress(ipv4: "::1", port: 1) }
        #expect(throws: EvError.invalidArgument) { try SocketAddress(ipv6: "127.0.0.1", port: 1) }
    }

    @Test func equalityAndHashingUseTheAddressBytes() throws {
        let a = try SocketAddress(ipv4: "127.0.0.1", port: 1)
        let b = try SocketAddress(host: "127.0.0.1", port: 1)
        let c = try SocketAddress(ipv4: "127.0.0.1", port: 2)
        let d = try SocketAddress(ipv6: "::1", port: 1)
        #expect(a == b && a != c && a != d)
        #expect(Set([a, b, c, d]).count == 3)
        // Round trip through the kernel's form.
        let copy = SocketAddress(storage: d.storage, length: d.length)
        #expect(copy == d && copy.description == "[::1]:1")
    }

    // MARK: Unix domain addresses (issue 12)

    /// A path address carries the path and its NUL (the length the kernel reports), prints
    /// as `unix:PATH`, and has neither host nor port.
    @Test func unixPath() throws {
        let a = try SocketAddress(unixPath: "/run/x.sock")
        #expect(a.family == AF_UNIX)
        #expect(a.unixPath == "/run/x.sock")
        #expect(a.abstractUnixName == nil && !a.isUnnamedUnix)
        #expect(a.description == "unix:/run/x.sock")
        #expect(Int(a.length) == 2 + "/run/x.sock".utf8.count + 1)
        #expect(a.port == 0 && a.host == "")
        let relative = try SocketAddress(unixPath: "x.sock")
        #expect(relative.unixPath == "x.sock" && relative.description == "unix:x.sock")
    }

    /// An abstract name starts with a NUL byte, has no terminator, prints as `unix:@NAME`
    /// with bytes that do not print escaped, and is not a path.
    @Test func abstractName() throws {
        let a = try SocketAddress(abstractUnixName: "evloop-test")
        #expect(a.family == AF_UNIX)
        #expect(a.abstractUnixName == "evloop-test" && a.unixPath == nil)
        #expect(a.description == "unix:@evloop-test")
        #expect(Int(a.length) == 2 + 1 + "evloop-test".utf8.count)
        #expect(try SocketAddress(abstractUnixName: "a\u{0}b\\c\u{e9}").description == "unix:@a\\x00b\\x5Cc\\xC3\\xA9")
        #expect(try SocketAddress(abstractUnixName: "x") != SocketAddress(unixPath: "x"))
    }

    /// An unnamed socket's address (a socketpair end, as getsockname reports it: the
    /// family alone, length 2) and an empty one (the sender of a datagram from an unnamed
    /// socket: length 0) each print as what they are.
    @Test func unnamedAndEmptyAddresses() {
        var storage = sockaddr_storage()
        storage.ss_family = sa_family_t(AF_UNIX)
        let unnamed = SocketAddress(storage: storage, length: 2)
        #expect(unnamed.isUnnamedUnix && unnamed.unixPath == nil && unnamed.abstractUnixName == nil)
        #expect(unnamed.description == "unix:(unnamed)")
        let empty = SocketAddress(storage: storage, length: 0)
        #expect(empty.family == AF_UNSPEC && !empty.isUnnamedUnix)
        #expect(empty.description == "(no address)")
        var other = sockaddr_storage()
        other.ss_family = sa_family_t(AF_NETLINK)
        #expect(SocketAddress(storage: other, length: 12).description == "address of family \(AF_NETLINK) (12 bytes)")
    }

    /// The longest path that fits (107 bytes and the NUL) is accepted; one byte more is
    /// `.nameTooLong`, never a truncated path; an empty path or one with a NUL inside is
    /// `.invalidArgument`.
    @Test func pathLimits() throws {
        #expect(SocketAddress.maximumUnixPathLength == 107)
        let longest = "/" + String(repeating: "p", count: 106)
        #expect(try SocketAddress(unixPath: longest).unixPath == longest)
        #expect(throws: EvError.nameTooLong) { try SocketAddress(unixPath: longest + "p") }
        #expect(throws: EvError.nameTooLong) { try SocketAddress(unixPath: String(repeating: "\u{e9}", count: 54)) }
        #expect(throws: EvError.nameTooLong) { try SocketAddress(abstractUnixName: String(repeating: "n", count: 108)) }
        #expect(try SocketAddress(abstractUnixName: String(repeating: "n", count: 107)).abstractUnixName?.count == 107)
        #expect(throws: EvError.invalidArgument) { try SocketAddress(unixPath: "") }
        #expect(throws: EvError.invalidArgument) { try SocketAddress(unixPath: "a\u{0}b") }
    }

    /// A path address from the kernel compares equal to the one built from the path whether
    /// or not the kernel counted the NUL, and a length beyond the storage is capped.
    @Test func kernelLengthsAreNormalized() throws {
        let built = try SocketAddress(unixPath: "sockets/evloop.sock")
        let withoutNul = SocketAddress(storage: built.storage, length: built.length - 1)
        #expect(withoutNul == built && withoutNul.hashValue == built.hashValue)
        let padded = SocketAddress(storage: built.storage, length: socklen_t(MemoryLayout<sockaddr_un>.size))
        #expect(padded == built)
        let huge = SocketAddress(storage: built.storage, length: 100_000)
        #expect(Int(huge.length) <= MemoryLayout<sockaddr_storage>.size && huge == built)
    }
}
