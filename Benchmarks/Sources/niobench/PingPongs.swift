#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BenchSupport
import NIOCore
import NIOPosix

/// Two samples that bound the measured window.
struct SampleWindow: Sendable {
    var start: Sample
    var end: Sample
}

/// The server side: writes back every buffer it reads.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

/// The client side: libxev's ping client (count complete "PING\n" echoes, send the next).
final class PingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let text: [UInt8] = Array("PING\n".utf8)
    private let warmup: Int
    private let count: Int
    private let done: EventLoopPromise<SampleWindow>
    private var ping = ByteBuffer()
    private var state = 0
    private var pongs = 0
    private var start: Sample?

    init(warmup: Int, count: Int, done: EventLoopPromise<SampleWindow>) {
        self.warmup = warmup
        self.count = count
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        // One buffer, made once; every send writes a copy of the struct (no byte copy).
        ping = context.channel.allocator.buffer(bytes: Self.text)
        context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        var echoes = 0
        for byte in buffer.readableBytesView {
            guard byte == Self.text[state] else {
                done.fail(ChannelError.inappropriateOperationForState)
                context.close(promise: nil)
                return
            }
            state += 1
            if state == Self.text.count {
                state = 0
                echoes += 1
            }
        }
        for _ in 0..<echoes {
            pongs += 1
            if pongs == warmup {
                start = Sample.now()
            } else if pongs == warmup + count {
                let end = Sample.now()
                done.succeed(SampleWindow(start: start!, end: end))
                context.close(promise: nil)
                return
            }
            context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        done.fail(error)
        context.close(promise: nil)
    }
}

enum NIOPingPongs {
    static func run(count: Int, warmup: Int) {
        let warmup = max(1, warmup)
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let server = try ServerBootstrap(group: serverGroup)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(EchoHandler())
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
            guard let port = server.localAddress?.port else { BenchOutput.fail("no server port") }
            let done = clientGroup.next().makePromise(of: SampleWindow.self)
            let client = try ClientBootstrap(group: clientGroup)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            PingHandler(warmup: warmup, count: count, done: done))
                    }
                }
                .connect(host: "127.0.0.1", port: port).wait()
            let window = try done.futureResult.wait()
            try client.closeFuture.wait()
            try server.close().wait()
            let w = Window(from: window.start, to: window.end, operations: UInt64(count))
            BenchOutput.result(bench: "ping-pongs", impl: "swiftnio", value: w.rate,
                               unit: "roundtrips/s", window: w, opName: "roundtrip")
        } catch {
            BenchOutput.fail("SwiftNIO ping-pong: \(error)")
        }
        try? clientGroup.syncShutdownGracefully()
        try? serverGroup.syncShutdownGracefully()
    }
}
