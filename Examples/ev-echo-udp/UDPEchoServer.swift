#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

/// What one UDP server thread did.
struct UDPEchoStats: Sendable {
    var datagrams: UInt64 = 0
    var bytes: UInt64 = 0
    var truncated: UInt64 = 0
    var errors: UInt64 = 0

    static func + (a: UDPEchoStats, b: UDPEchoStats) -> UDPEchoStats {
        UDPEchoStats(datagrams: a.datagrams + b.datagrams, bytes: a.bytes + b.bytes,
                     truncated: a.truncated + b.truncated, errors: a.errors + b.errors)
    }
}

/// One loop and one SO_REUSEPORT socket: receives datagrams and sends each back to its
/// sender, unchanged.
///
/// A few `Slot`s are in flight at once, each a buffer with a receive and a send completion
/// (allocated once, reused for every datagram): a slot receives a datagram, sends it back
/// from the same buffer, and only then receives again. So the server holds at most
/// `slots` datagrams, however fast clients send: the rest wait in the socket's receive
/// buffer, and the kernel drops what does not fit, which is UDP's own flow control.
final class UDPEchoServer {
    /// Large enough for any UDP datagram over IPv4 or IPv6 (without jumbograms).
    static let bufferSize = 65_536
    static let slots = 4

    let loop: LoopCore
    let socket: Int32
    private let stopListener: StopListener
    private var slots: [Slot] = []
    private var stopping = false
    var stats = UDPEchoStats()

    final class Slot {
        let buffer: UnsafeMutableRawBufferPointer
        let receive = Completion()
        let send = Completion()

        init() {
            buffer = .allocate(byteCount: UDPEchoServer.bufferSize, alignment: 64)
        }

        deinit { buffer.deallocate() }
    }

    init(loop: LoopCore, socket: Int32, stop: StopListener) {
        self.loop = loop
        self.socket = socket
        self.stopListener = stop
        for _ in 0..<Self.slots {
            let slot = Slot()
            slot.receive.operation = .recvmsg(socket: socket, buffer: slot.buffer)
            slot.receive.callback = { [unowned self, unowned slot] _, result in self.received(slot, result) }
            slot.send.callback = { [unowned self, unowned slot] _, result in self.sent(slot, result) }
            slots.append(slot)
        }
    }

    /// Serves until asked to stop; returns what it did.
    func serve() -> UDPEchoStats {
        for slot in slots { submit(slot.receive) }
        stopListener.start { [unowned self] in self.stop() }
        do {
            try loop.run(.untilDone)
        } catch {
            Report.fail("ev-echo-udp", "loop failed: \(error)")
        }
        return stats
    }

    private func received(_ slot: Slot, _ result: CompletionResult) -> CallbackAction {
        if stopping { return .disarm }
        switch result {
        case .recvmsg(.success(let message)):
            if message.truncated { stats.truncated += 1 }
            slot.send.operation = .sendmsg(socket: socket,
                                           buffer: UnsafeRawBufferPointer(rebasing: slot.buffer[0..<message.count]),
                                           address: message.address)
            submit(slot.send)
            return .disarm
        case .recvmsg(.failure(.canceled)):
            return .disarm
        case .recvmsg(.failure(let error)):
            // ECONNREFUSED here is the ICMP "port unreachable" for an earlier reply to a
            // client that has gone; it concerns that client only. Keep receiving.
            if error != .connectionRefused {
                stats.errors += 1
                Report.warn("ev-echo-udp: receive: \(error)")
            }
            return .rearm
        default:
            return .disarm
        }
    }

    private func sent(_ slot: Slot, _ result: CompletionResult) -> CallbackAction {
        switch result {
        case .write(.success(let n)):
            stats.datagrams += 1
            stats.bytes += UInt64(n)
        case .write(.failure(.canceled)):
            break
        case .write(.failure(let error)):
            // A reply that cannot be sent (the sender's address is unreachable, or the
            // send buffer is out of memory) is dropped, as UDP would drop it in the network.
            stats.errors += 1
            Report.warn("ev-echo-udp: send: \(error)")
        default:
            break
        }
        if !stopping { submit(slot.receive) }
        return .disarm
    }

    func stop() {
        guard !stopping else { return }
        stopping = true
        for slot in slots {
            for c in [slot.receive, slot.send] where c.state == .active {
                try? loop.cancel(c, using: Completion())
            }
        }
        stopListener.cancel()
    }

    private func submit(_ c: Completion) {
        do {
            try loop.add(c)
        } catch {
            fatalError("ev-echo-udp: add failed: \(error)")
        }
    }
}
