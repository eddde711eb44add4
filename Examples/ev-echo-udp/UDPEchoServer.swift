#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

/// What one UDP server thread did.
struct UDPEchoStatistics: ServerStatistics {
    /// Datagrams sent back to their senders.
    var datagrams: UInt64 = 0
    var bytes: UInt64 = 0
    /// Datagrams larger than the receive buffer (cut short, and echoed so).
    var truncated: UInt64 = 0
    /// Receives and sends that failed, other than the ICMP echo of a sender that has gone.
    var errors: UInt64 = 0

    static var summary: [(label: String, counter: WritableKeyPath<Self, UInt64>)] {
        [("datagrams echoed", \.datagrams),
         ("bytes echoed", \.bytes),
         ("datagrams truncated", \.truncated),
         ("errors", \.errors)]
    }

    var perThread: String { "\(datagrams) datagrams, \(bytes) bytes" }
}

/// One loop and one SO_REUSEPORT socket: receives datagrams and sends each back to its
/// sender, unchanged.
///
/// A few `Slot`s are in flight at once, each a buffer with a receive and a send completion
/// (allocated once, reused for every datagram): a slot receives a datagram, sends it back
/// from the same buffer, and only then receives again. So the server holds at most
/// `slots` datagrams however fast clients send: the rest wait in the socket's receive
/// buffer, and the kernel drops what does not fit, which is UDP's own flow control.
///
/// The receive is armed through the UDP watcher once per slot and then re-added as it is
/// (operation and callback unchanged); the reply only changes the send's buffer length and
/// destination. The watcher's `send` would wrap its callback in a new closure on every
/// call, so the reply sets the send completion's operation instead: nothing is allocated
/// per datagram.
final class UDPEchoServer: LoopServer {
    /// Large enough for any UDP datagram over IPv4 or IPv6 (without jumbograms).
    static let bufferSize = 65_536
    static let slots = 4

    let loop: LoopCore
    let socket: UDPSocket
    private var slots: [Slot] = []
    private var stopping = false
    var stats = UDPEchoStatistics()

    final class Slot {
        let buffer: UnsafeMutableRawBufferPointer
        let receive = Completion()
        let send = Completion()

        init() {
            buffer = .allocate(byteCount: UDPEchoServer.bufferSize, alignment: 64)
        }

        deinit { buffer.deallocate() }
    }

    init(loop: LoopCore, socket: UDPSocket) {
        self.loop = loop
        self.socket = socket
        for _ in 0..<Self.slots {
            let slot = Slot()
            slot.send.callback = { [unowned self, unowned slot] _, result in self.sent(slot, result) }
            slots.append(slot)
        }
    }

    /// Starts receiving; the loop group runs the loop until the server is stopped.
    func start() throws(EvError) {
        for slot in slots {
            try socket.receive(loop: loop, completion: slot.receive, buffer: slot.buffer) { [unowned self, unowned slot] _, result in
                self.received(slot, result)
            }
        }
    }

    private func received(_ slot: Slot, _ result: Result<ReceivedMessage, EvError>) -> CallbackAction {
        if stopping { return .disarm }
        switch result {
        case .success(let message):
            if message.truncated { stats.truncated += 1 }
            slot.send.operation = .sendmsg(socket: socket.fd,
                                           buffer: UnsafeRawBufferPointer(rebasing: slot.buffer[0..<message.count]),
                                           address: message.address)
            submit(slot.send)
            return .disarm
        case .failure(.canceled):
            return .disarm
        case .failure(let error):
            // ECONNREFUSED here is the ICMP "port unreachable" for an earlier reply to a
            // client that has gone; it concerns that client only. Keep receiving.
            if error != .connectionRefused {
                stats.errors += 1
                Report.warn("ev-echo-udp: receive: \(error)")
            }
            return .rearm
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
        // The receive completion still holds its operation and the watcher's callback.
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
    }

    private func submit(_ c: Completion) {
        do {
            try loop.add(c)
        } catch {
            fatalError("ev-echo-udp: add failed: \(error)")
        }
    }
}
