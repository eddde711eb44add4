#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys
import Synchronization

/// Name resolution that never blocks the loop: getaddrinfo(3) on a small pool of its own,
/// with the addresses (`[SocketAddress]`) delivered on the loop thread.
///
/// Why a pool of its own: getaddrinfo blocks for as long as the name servers take (seconds,
/// when one does not answer), and has no non-blocking form in the C library. On the loop it
/// would stall every connection; on a pool shared with file I/O, a few slow lookups would
/// take every thread and stall the files too (libuv#28: DNS and the file system shared
/// libuv's four threads). So a resolver runs lookups on its own `WorkPool`, never on the
/// readiness backends' file pool; lookups beyond its threads wait in its queue.
///
/// What a lookup is: the host's addresses as getaddrinfo returns them (the files in
/// /etc/nsswitch.conf, then DNS; numeric hosts such as "127.0.0.1", "::1" or "[::1]" need
/// no lookup), in its order (RFC 6724: the address most likely to work first), one entry
/// per address, with `port` filled in, optionally only of one family. No AI_ADDRCONFIG:
/// on a machine with only loopback configured it hides "localhost" itself; an address
/// of a family the machine cannot reach fails fast at connect instead.
///
/// Errors, typed: `.unknownHost` when the name has no address (EAI_NONAME, EAI_NODATA,
/// EAI_ADDRFAMILY: NXDOMAIN, not in /etc/hosts, or no address of the family asked for);
/// `.nameResolutionFailed(EAI_AGAIN)` when the name servers did not answer (a temporary
/// failure: try again later) and `.nameResolutionFailed(EAI_FAIL)` for their permanent
/// refusal; `.systemResources` for EAI_MEMORY; the errno of EAI_SYSTEM.
///
/// Cancellation: a lookup that has not started is withdrawn (`.canceled`). One that runs
/// cannot be interrupted (getaddrinfo has no way), so a cancel in mid-resolution ends the
/// operation at once, with `.canceled` and the cancel's success, and the late result is
/// dropped when the lookup returns: the caller never waits for a slow name server. The
/// thread stays busy until then.
///
/// Ownership: the resolver owns its pool's threads (joined by `shutdown()` or when the last
/// reference goes); it opens no descriptor (the loop's work inbox is the loop's).
///
/// ```swift
/// let resolver = try Resolver()
/// let lookup = Completion()
/// try resolver.resolve(loop: loop, completion: lookup, host: "example.com", port: 443) { _, result in
///     switch result {
///     case .success(let addresses): connect(to: addresses)
///     case .failure(.unknownHost): print("no such host")
///     case .failure(let error): print("lookup failed:", error)
///     }
///     return .disarm
/// }
/// ```
public final class Resolver: Sendable {
    /// A lookup's addresses, or why there are none.
    public typealias AddressesCallback = (Completion, Result<[SocketAddress], EvError>) -> CallbackAction

    /// The lookups' threads.
    package let pool: WorkPool

    #if DEBUG
    /// Test hook (debug builds only): each lookup started after this is set first sleeps
    /// this many nanoseconds on its pool thread, as a slow name server would make it, so a
    /// test can cancel it in mid-resolution without a network.
    private let delayNanoseconds = Atomic<Int64>(0)

    /// See `delayNanoseconds`.
    package var lookupDelayForTesting: Duration {
        get { .nanoseconds(delayNanoseconds.load(ordering: .relaxed)) }
        set {
            let (seconds, attoseconds) = newValue.components
            delayNanoseconds.store(seconds * 1_000_000_000 + attoseconds / 1_000_000_000, ordering: .relaxed)
        }
    }
    #endif

    /// Creates a resolver whose lookups run on at most `threads` threads of its own
    /// (started on demand). Throws `.invalidArgument` when `threads` is less than 1.
    public init(threads: Int = 2) throws(EvError) {
        pool = try WorkPool(threads: threads, name: "ev-resolve")
    }

    /// Withdraws the lookups that have not started (`.canceled`), waits for the running
    /// ones and joins the threads (see `WorkPool.shutdown()`); later lookups complete with
    /// `.canceled`.
    public func shutdown() { pool.shutdown() }

    /// Looks `host` up on the resolver's threads and calls `callback` on `loop`'s thread
    /// with its addresses, each with `port`.
    ///
    /// - Parameters:
    ///   - loop: the loop whose thread gets the result.
    ///   - completion: the caller's completion for the lookup (active until the callback).
    ///   - host: a name ("example.com", "localhost") or a numeric address ("127.0.0.1",
    ///     "::1", "[::1]").
    ///   - port: the port every address gets (host byte order).
    ///   - family: `AF_UNSPEC` (every address), `AF_INET` or `AF_INET6`.
    ///   - callback: gets the addresses, or the error, on the loop thread.
    ///
    /// Throws `.completionActive` while `completion` is in flight, and `.invalidArgument`
    /// (before anything starts) for an empty host, a host containing a NUL byte, or another
    /// family. Everything else arrives in the callback, exactly once; `.rearm` looks the
    /// host up again.
    public func resolve(loop: some EventLoop, completion: Completion, host: String, port: UInt16 = 0,
                        family: Int32 = AF_UNSPEC, callback: @escaping AddressesCallback) throws(EvError) {
        guard completion.state == .dead else { throw .completionActive }
        let name = try Self.checkedHost(host)
        guard family == AF_UNSPEC || family == AF_INET || family == AF_INET6 else { throw .invalidArgument }
        #if DEBUG
        let delay = delayNanoseconds.load(ordering: .relaxed)
        #endif
        let job = WorkPool.Job(threads: pool.threads, abandonsWhenCanceledRunning: true) { () throws(EvError) -> any Sendable in
            #if DEBUG
            if delay > 0 {
                var pause = timespec(tv_sec: Int(delay / 1_000_000_000), tv_nsec: Int(delay % 1_000_000_000))
                var left = timespec()
                // EINTR: a signal cut the pause short; sleep for what remains.
                while nanosleep(&pause, &left) != 0 && cevsys_errno() == EINTR { pause = left }
            }
            #endif
            return try Resolver.lookUp(name, port: port, family: family)
        }
        try completion.start(.work(job: job), on: loop, viewing: { $1.workValue([SocketAddress].self, of: $0) },
                             callback: callback)
    }

    /// The host as getaddrinfo takes it: brackets around an IPv6 address removed.
    static func checkedHost(_ host: String) throws(EvError) -> String {
        var name = host
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        // Empty: getaddrinfo would take it for "no host" (the wildcard or loopback address).
        // A NUL: the C string would end there and name another host.
        guard !name.isEmpty, !name.utf8.contains(0) else { throw .invalidArgument }
        return name
    }

    /// getaddrinfo(3), blocking: the addresses of `host` (one per address, in getaddrinfo's
    /// order), each with `port`.
    static func lookUp(_ host: String, port: UInt16, family: Int32) throws(EvError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = family
        // One entry per address (without a socket type, each comes once per type).
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0 else { throw error(gai: rc, errno: cevsys_errno()) }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var seen = Set<SocketAddress>()
        var p = list
        while let entry = p {
            p = entry.pointee.ai_next
            guard let raw = entry.pointee.ai_addr else { continue }
            let f = entry.pointee.ai_family
            guard f == AF_INET || f == AF_INET6 else { continue }
            var storage = sockaddr_storage()
            let length = min(Int(entry.pointee.ai_addrlen), MemoryLayout<sockaddr_storage>.size)
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: length)) }
            let address = SocketAddress(storage: storage, length: socklen_t(length))
            if seen.insert(address).inserted { addresses.append(address) }
        }
        guard !addresses.isEmpty else { throw .unknownHost }
        return addresses
    }

    /// glibc's EAI_NODATA and EAI_ADDRFAMILY (netdb.h, under _GNU_SOURCE, which Swift's
    /// Glibc module does not define).
    private static let eaiNoData: Int32 = -5
    private static let eaiAddressFamily: Int32 = -9

    /// A getaddrinfo failure as an `EvError` (see the type's "Errors").
    static func error(gai rc: Int32, errno code: Int32) -> EvError {
        switch rc {
        case EAI_NONAME, eaiNoData, eaiAddressFamily: return .unknownHost
        case EAI_MEMORY: return .systemResources
        // ENOENT here is a missing configuration file: `.noSuchFile`.
        case EAI_SYSTEM: return EvError(errno: code)
        case EAI_BADFLAGS, EAI_FAMILY, EAI_SOCKTYPE, EAI_SERVICE: return .invalidArgument
        default: return .nameResolutionFailed(rc)
        }
    }
}
