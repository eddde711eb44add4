#if canImport(Glibc)
import Glibc
#endif
import Ev

/// Makes the sockets of a server that runs one loop per thread: `count` sockets bound to
/// one address with SO_REUSEPORT, so the kernel spreads connections (TCP) or senders (UDP)
/// across the threads. The first socket resolves port 0 to a real port, which the others
/// then bind. `prepare` runs after each bind (for example `listen`). On any error, the
/// sockets made so far are closed and the error is thrown.
public func makeReusePortSockets<S: LoopSocket>(
    count: Int, address: SocketAddress,
    make: (SocketAddress) throws(EvError) -> S,
    prepare: (S) throws(EvError) -> Void = { _ in }
) throws(EvError) -> (sockets: [S], address: SocketAddress) {
    var sockets: [S] = []
    func bound(to address: SocketAddress) throws(EvError) -> S {
        let socket = try make(address)
        do {
            try socket.setReuseAddress(true)
            try socket.setReusePort(true)
            if address.family == AF_INET6 { try socket.setIPv6Only(true) }
            try socket.bind(to: address)
            try prepare(socket)
        } catch {
            close(socket.fd)
            throw error
        }
        return socket
    }
    do {
        let first = try bound(to: address)
        sockets.append(first)
        let resolved = try first.localAddress()
        for _ in 1..<max(count, 1) { sockets.append(try bound(to: resolved)) }
        return (sockets, resolved)
    } catch {
        for s in sockets { close(s.fd) }
        throw error
    }
}
