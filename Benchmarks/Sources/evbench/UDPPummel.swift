#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import BenchSupport

/// libxev's udp_pummel_1v1 (src/bench/udp_pummel_1v1.zig, after libuv's): one sender
/// socket sends a 45-byte datagram to one receiver socket as fast as the loop can, with
/// `.rearm`, until it has sent `count`; the receiver checks every datagram. One loop.
/// Figures: datagrams received/s and sent/s (loopback UDP drops datagrams when the
/// receiver's buffer is full, so the two may differ).
enum UDPPummel {
    static let expected: [UInt8] = Array("RANG TANG DING DONG I AM THE JAPANESE SANDMAN".utf8)

    static func run(_ setup: BenchSetup, count: Int, warmup: Int) {
        let loop = setup.openLoop()
        let pummel = check("setup") { try Pummel(loop: loop, count: count, warmup: warmup) }
        check("start") { try pummel.start() }
        check("loop") { try loop.run(.untilDone) }
        let end = Sample.now()
        let receivedAtEnd = pummel.received
        drain(loop)
        guard let start = pummel.startSample else { BenchOutput.fail("udp_pummel ended during the warm-up") }
        let sent = UInt64(count - warmup)
        let received = UInt64(receivedAtEnd - pummel.receivedAtStart)
        let window = Window(from: start, to: end, operations: sent)
        let receivedRate = window.seconds > 0 ? Double(received) / window.seconds : 0
        // Allocations and CPU are per datagram sent (each is also received, or dropped).
        BenchOutput.result(bench: "udp_pummel_1v1", impl: setup.implementation, value: receivedRate,
                           unit: "datagrams/s", window: window, opName: "datagram",
                           extra: [("sent_per_s", BenchOutput.fixed(window.rate, 1)),
                                   ("received", String(received)), ("sent", String(sent))])
        pummel.release()
    }

    /// The callbacks capture the pummel strongly and its counters are
    /// `@exclusivity(unchecked)`, as in PingUDP1.swift (harness costs, not the library's);
    /// `release()` breaks the cycle.
    final class Pummel {
        let loop: LoopCore
        let receiver: UDPSocket
        let sender: UDPSocket
        let target: SocketAddress
        let count: Int
        let warmup: Int
        @exclusivity(unchecked) private(set) var sent = 0
        @exclusivity(unchecked) private(set) var received = 0
        @exclusivity(unchecked) private(set) var receivedAtStart = 0
        @exclusivity(unchecked) private(set) var startSample: Sample?
        private let receiveCompletion = Completion()
        private let sendCompletion = Completion()
        private let receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 64)
        private let message: UnsafeMutableRawBufferPointer

        init(loop: LoopCore, count: Int, warmup: Int) throws(EvError) {
            self.loop = loop
            self.count = count
            self.warmup = min(warmup, count / 2)
            receiver = try UDPSocket(family: AF_INET, loop: loop)
            try receiver.bind(to: loopbackAnyPort())
            target = try receiver.localAddress()
            sender = try UDPSocket(family: AF_INET, loop: loop)
            message = .allocate(byteCount: UDPPummel.expected.count, alignment: 16)
            message.copyBytes(from: UDPPummel.expected)
        }

        func start() throws(EvError) {
            receiveCompletion.operation = .recvmsg(socket: receiver.fd, buffer: receiveBuffer)
            receiveCompletion.callback = { _, result in self.didReceive(result) }
            sendCompletion.operation = .sendmsg(socket: sender.fd, buffer: UnsafeRawBufferPointer(message), address: target)
            sendCompletion.callback = { _, result in self.didSend(result) }
            try loop.add(receiveCompletion)
            try loop.add(sendCompletion)
        }

        private func didReceive(_ result: CompletionResult) -> CallbackAction {
            guard case .recvmsg(.success(let m)) = result else { return .disarm }   // cancelled at the end
            if sent >= count { return .disarm }   // the run is over (drained after stop)
            guard m.count == UDPPummel.expected.count,
                  memcmp(receiveBuffer.baseAddress!, message.baseAddress!, m.count) == 0 else {
                BenchOutput.fail("unexpected datagram of \(m.count) bytes")
            }
            received += 1
            return .rearm
        }

        private func didSend(_ result: CompletionResult) -> CallbackAction {
            guard case .write(.success) = result else { BenchOutput.fail("sendmsg: \(result)") }
            sent += 1
            if sent == warmup {
                startSample = Sample.now()
                receivedAtStart = received
            }
            if sent == count {
                loop.stop()
                return .disarm
            }
            return .rearm
        }

        /// Frees the buffers, closes the sockets and drops the callbacks, which hold `self`.
        func release() {
            receiveCompletion.callback = { _, _ in .disarm }
            sendCompletion.callback = { _, _ in .disarm }
            receiveBuffer.deallocate()
            message.deallocate()
            close(receiver.fd)
            close(sender.fd)
        }
    }
}
