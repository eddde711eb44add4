#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BenchSupport
import NIOCore
import NIOHTTP1
import NIOPosix

/// The SwiftNIO peer of ev-http in the http benchmark group, written the way SwiftNIO's
/// users write an HTTP server: a `ServerBootstrap` on a `MultiThreadedEventLoopGroup`, the
/// standard HTTP/1 pipeline (`configureHTTPServerPipeline`: the request decoder, the
/// response encoder, pipelining and keep-alive handling), and a `ChannelInboundHandler`
/// that answers every request with the same response as ev-http's `/` ("Hello, World!",
/// `Content-Length: 13`, `Content-Type: text/plain`), writes on `.end` and flushes on
/// `channelReadComplete` (so the responses to one read go out in one flush).
enum NIOHTTPServer {
    static func run(port: Int, threads: Int) {
        // SIGINT/SIGTERM are taken with sigwait below: block them before NIO's threads exist.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(HelloHandler())
                }
            }
        let server: Channel
        do {
            server = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
        } catch {
            BenchOutput.fail("niobench http-server: bind: \(error)")
        }
        BenchOutput.say("listening on 127.0.0.1:\(server.localAddress?.port ?? 0) (SwiftNIO, threads \(threads))")
        var received: Int32 = 0
        sigwait(&signals, &received)
        try? server.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Answers every request with the hello response.
final class HelloHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var keepAlive = true
    private var body: ByteBuffer?
    private let headers: HTTPHeaders = ["Content-Length": "13", "Content-Type": "text/plain"]

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            keepAlive = request.isKeepAlive
        case .body:
            break
        case .end:
            let body = self.body ?? context.channel.allocator.buffer(string: "Hello, World!")
            self.body = body
            var head = HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)
            if !keepAlive { head.headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            if keepAlive {
                context.write(wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in loopBound.value.close(promise: nil) }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}
