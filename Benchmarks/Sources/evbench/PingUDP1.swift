#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import BenchSupport

/// libxev's ping-udp1 (src/bench/ping-udp1.zig): one UDP socket bound to a loopback
/// address sends "PING\n" to itself; each time both the send and the receive of a ping have
/// completed, the next ping goes out. One loop, one thread. Figure: roundtrips/s.
enum PingUDP1 {
    static func run(_ setup: BenchSetup, count: Int, warmup: Int) {
        let loop = setup.openLoop()
        let pinger = check("pinger") { try Pinger(loop: loop, warmup: warmup, count: count) }
        check("start") { try pinger.start() }
        check("loop") { try loop.run(.untilDone) }
        drain(loop)
        guard let start = pinger.startSample, let end = pinger.endSample else {
            BenchOutput.fail("ping-udp1 ended after \(pinger.pongs) roundtrips")
        }
        pinger.release()
        let window = Window(from: start, to: end, operations: UInt64(count))
        BenchOutput.result(bench: "ping-udp1", impl: setup.implementation, value: window.rate,
                           unit: "roundtrips/s", window: window, opName: "roundtrip")
    }

    /// Like the TCP ping-pongs' sides (PingPongs.swift), the callbacks capture the pinger
    /// strongly (the cycle is broken by `release()` after the loop has finished) and its
    /// state is `@exclusivity(unchecked)` (only the loop's thread touches it): an `unowned`
    /// capture retained and released the pinger at every callback and each access to a
    /// field was a dynamic exclusivity check, costs of the harness, not of the library
    /// (libxev's harness pays none of them).
    final class Pinger {
        let loop: LoopCore
        let socket: UDPSocket
        let address: SocketAddress
        let warmup: Int
        let count: Int
        @exclusivity(unchecked) private(set) var pongs = 0
        @exclusivity(unchecked) private(set) var startSample: Sample?
        @exclusivity(unchecked) private(set) var endSample: Sample?
        @exclusivity(unchecked) private var parser = PingParser()
        /// Send and receive both done: libxev's `op_count == 2`.
        @exclusivity(unchecked) private var opCount = 0
        @exclusivity(unchecked) private var done = false
        private let readCompletion = Completion()
        private let writeCompletion = Completion()
        private let closeCompletion = Completion()
        private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 64)

        init(loop: LoopCore, warmup: Int, count: Int) throws(EvError) {
            self.loop = loop
            self.warmup = warmup
            self.count = count
            socket = try UDPSocket(family: AF_INET, loop: loop)
            try socket.bind(to: loopbackAnyPort())
            address = try socket.localAddress()
        }

        func start() throws(EvError) {
            readCompletion.operation = .recvmsg(socket: socket.fd, buffer: readBuffer)
            readCompletion.callback = { _, result in self.didRead(result) }
            writeCompletion.operation = .sendmsg(socket: socket.fd, buffer: Ping.bytes, address: address)
            writeCompletion.callback = { _, result in self.didWrite(result) }
            closeCompletion.operation = .close(fd: socket.fd)
            try loop.add(readCompletion)
            try loop.add(writeCompletion)
        }

        private func didRead(_ result: CompletionResult) -> CallbackAction {
            guard case .recvmsg(.success(let message)) = result else {
                BenchOutput.fail("recvmsg: \(result)")
            }
            let echoes = parser.feed(UnsafeRawBufferPointer(rebasing: readBuffer[..<message.count]))
            for _ in 0..<echoes {
                pongs += 1
                if pongs == warmup {
                    startSample = Sample.now()
                } else if pongs == warmup + count {
                    endSample = Sample.now()
                    done = true
                    check("close") { try loop.add(closeCompletion) }
                    return .disarm
                }
                opCount += 1
                if opCount == 2 {
                    opCount = 0
                    check("send") { try loop.add(writeCompletion) }
                }
            }
            return .rearm
        }

        private func didWrite(_ result: CompletionResult) -> CallbackAction {
            guard case .write(.success) = result else {
                if done { return .disarm }
                BenchOutput.fail("sendmsg: \(result)")
            }
            if done { return .disarm }
            opCount += 1
            if opCount == 2 {
                opCount = 0
                return .rearm
            }
            return .disarm
        }

        /// Frees the buffer and drops the callbacks, which hold `self` (after the loop has
        /// finished with them).
        func release() {
            readBuffer.deallocate()
            for c in [readCompletion, writeCompletion] { c.callback = { _, _ in .disarm } }
        }
    }
}
