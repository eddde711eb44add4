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
}
