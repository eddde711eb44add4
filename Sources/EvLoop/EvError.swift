#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The error every EvLoop operation reports, as a value (never a crash).
///
/// The cases that programs branch on are named (a refused connection, a reset, the end of
/// a stream, a cancellation); everything else keeps its errno in `.errno(_:)`, so nothing
/// the kernel says is lost. Backends report raw results in the kernel's convention
/// (a count, or `-errno`); `EvError(errno:)` is the single place where those become names,
/// so the three backends cannot disagree about what an errno means.
///
/// One errno has two meanings, told apart by the operation that reported it: ENOENT from a
/// call that names a path (connecting to a Unix socket path, opening a file, spawning a
/// program) is `.noSuchFile`, which is what `EvError(errno:)` gives; ENOENT from a cancel
/// means "nothing to cancel" and is `.notFound`, which only the cancel's result reports
/// (`Completion.makeResult(raw:)` maps it per operation kind). A program that checks for a
/// missing socket file never mistakes it for a lost cancel, and the reverse.
public enum EvError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The operation was cancelled before it completed (ECANCELED).
    case canceled
    /// The peer closed its side: a read returned 0 bytes into a non-empty buffer.
    case endOfFile
    /// ECONNREFUSED: nothing listens at the address.
    case connectionRefused
    /// ECONNRESET: the peer reset the connection.
    case connectionReset
    /// ECONNABORTED: a connection was aborted before accept took it.
    case connectionAborted
    /// EPIPE: writing to a connection the peer has closed (no SIGPIPE is raised).
    case brokenPipe
    /// EBADF: the descriptor is closed or was never valid.
    case badFileDescriptor
    /// ETIMEDOUT.
    case timedOut
    /// ENOTCONN: the socket is not connected.
    case notConnected
    /// EADDRINUSE.
    case addressInUse
    /// EADDRNOTAVAIL.
    case addressNotAvailable
    /// ENETUNREACH / EHOSTUNREACH.
    case unreachable
    /// Name resolution (`Resolver`) found no address for the host: the name does not exist
    /// (EAI_NONAME: NXDOMAIN, or not in /etc/hosts), or exists without an address of the
    /// family asked for (EAI_NODATA, EAI_ADDRFAMILY). Asking again will not help.
    case unknownHost
    /// Name resolution failed for a reason other than an unknown host, with getaddrinfo's
    /// EAI_ code: `EAI_AGAIN` is temporary (the name server did not answer in time, or
    /// answered SERVFAIL: try again later, or the machine has no network), `EAI_FAIL` is a
    /// name server's permanent refusal. (Out of memory is `.systemResources`, a system
    /// error its errno, and a flag or family the resolver refuses `.invalidArgument`.)
    case nameResolutionFailed(Int32)
    /// EACCES / EPERM.
    case permissionDenied
    /// EINVAL, or an argument the loop refuses before the kernel sees it.
    case invalidArgument
    /// EMFILE, ENFILE, ENOBUFS, ENOMEM: out of descriptors or memory. An accept that gets
    /// this is reported, not retried, so a full descriptor table cannot spin the loop.
    case systemResources
    /// A cancel found nothing to cancel: the target had already finished, or was never added.
    /// Only a cancel's result reports it (the kernel says ENOENT there); ENOENT from any
    /// other operation is `.noSuchFile`.
    case notFound
    /// ENOENT from a call that names a path: the file, directory or Unix socket path does
    /// not exist (connect to a missing socket path, `File(path:)` of a missing file, spawning
    /// a missing program).
    case noSuchFile
    /// ENAMETOOLONG, or a Unix socket path or abstract name longer than `sun_path` holds
    /// (107 bytes and the terminating NUL): refused before the kernel sees it, never
    /// silently truncated (a truncated path names another file).
    case nameTooLong
    /// EISDIR: a directory where a file is needed (opening one for writing, unlinking one).
    case isDirectory
    /// ENOTDIR: a file where a directory is needed (a path component, rmdir of a file).
    case notDirectory
    /// EEXIST: the name exists already (mkdir, an exclusive create).
    case fileExists
    /// ENOTEMPTY: removing (or renaming onto) a directory that has entries.
    case directoryNotEmpty
    /// A cancel came too late: the target is already completing and will report its real result.
    case inProgress
    /// `run` was called from inside a callback of the same loop.
    case nestedRun
    /// `add` was given a completion that is still active.
    case completionActive
    /// A cancel was aimed at another cancel, or at itself.
    case cannotCancelCancel
    /// A wait on an `AsyncNotifier` that already has a wait armed (through the same `Async`,
    /// another `Async` wrapping the notifier, or the awaitable `wait(on:)`): one notifier,
    /// one wait at a time (issue 16; see `Async`).
    case notifierInUse
    /// Any other errno, kept as it is.
    case errno(Int32)

    /// Maps a positive errno value to its named case (or `.errno` when it has no name).
    /// ENOENT is `.noSuchFile` here; a cancel's result maps it to `.notFound` instead.
    public init(errno code: Int32) {
        switch code {
        case ECANCELED: self = .canceled
        case ECONNREFUSED: self = .connectionRefused
        case ECONNRESET: self = .connectionReset
        case ECONNABORTED: self = .connectionAborted
        case EPIPE: self = .brokenPipe
        case EBADF: self = .badFileDescriptor
        case ETIMEDOUT, ETIME: self = .timedOut
        case ENOTCONN: self = .notConnected
        case EADDRINUSE: self = .addressInUse
        case EADDRNOTAVAIL: self = .addressNotAvailable
        case ENETUNREACH, EHOSTUNREACH: self = .unreachable
        case EACCES, EPERM: self = .permissionDenied
        case EINVAL: self = .invalidArgument
        case EMFILE, ENFILE, ENOBUFS, ENOMEM: self = .systemResources
        case ENOENT: self = .noSuchFile
        case ENAMETOOLONG: self = .nameTooLong
        case EISDIR: self = .isDirectory
        case ENOTDIR: self = .notDirectory
        case EEXIST: self = .fileExists
        case ENOTEMPTY: self = .directoryNotEmpty
        case EALREADY: self = .inProgress
        case EvError.cancelOfCancelCode: self = .cannotCancelCancel
        default: self = .errno(code)
        }
    }

    /// An errno value outside the kernel's range, used internally so a cancel aimed at a
    /// cancel can travel through the raw-result path like every other outcome.
    package static let cancelOfCancelCode: Int32 = 100_001

    /// The errno this error stands for, where it has one.
    public var errnoValue: Int32? {
        switch self {
        case .canceled: return ECANCELED
        case .endOfFile: return nil
        case .connectionRefused: return ECONNREFUSED
        case .connectionReset: return ECONNRESET
        case .connectionAborted: return ECONNABORTED
        case .brokenPipe: return EPIPE
        case .badFileDescriptor: return EBADF
        case .timedOut: return ETIMEDOUT
        case .notConnected: return ENOTCONN
        case .addressInUse: return EADDRINUSE
        case .addressNotAvailable: return EADDRNOTAVAIL
        case .unreachable: return EHOSTUNREACH
        case .unknownHost, .nameResolutionFailed: return nil
        case .permissionDenied: return EACCES
        case .invalidArgument: return EINVAL
        case .systemResources: return EMFILE
        case .notFound, .noSuchFile: return ENOENT
        case .nameTooLong: return ENAMETOOLONG
        case .isDirectory: return EISDIR
        case .notDirectory: return ENOTDIR
        case .fileExists: return EEXIST
        case .directoryNotEmpty: return ENOTEMPTY
        case .inProgress: return EALREADY
        case .nestedRun, .completionActive, .cannotCancelCancel, .notifierInUse: return nil
        case .errno(let e): return e
        }
    }

    public var description: String {
        switch self {
        case .canceled: return "operation canceled"
        case .endOfFile: return "end of file"
        case .connectionRefused: return "connection refused"
        case .connectionReset: return "connection reset by peer"
        case .connectionAborted: return "connection aborted"
        case .brokenPipe: return "broken pipe"
        case .badFileDescriptor: return "bad file descriptor"
        case .timedOut: return "timed out"
        case .notConnected: return "socket is not connected"
        case .addressInUse: return "address in use"
        case .addressNotAvailable: return "address not available"
        case .unreachable: return "network or host unreachable"
        case .unknownHost: return "unknown host (the name has no address)"
        case .nameResolutionFailed(let code): return "name resolution failed: \(String(cString: gai_strerror(code)))"
        case .permissionDenied: return "permission denied"
        case .invalidArgument: return "invalid argument"
        case .systemResources: return "out of descriptors or memory"
        case .notFound: return "nothing to cancel (already finished or never added)"
        case .noSuchFile: return "no such file or directory"
        case .nameTooLong: return "name too long (a Unix socket path holds at most 107 bytes)"
        case .isDirectory: return "is a directory"
        case .notDirectory: return "not a directory"
        case .fileExists: return "file exists"
        case .directoryNotEmpty: return "directory not empty"
        case .inProgress: return "cancel too late: operation already completing"
        case .nestedRun: return "run() called from inside a callback of the same loop"
        case .completionActive: return "completion is still active; wait for its callback before reusing it"
        case .cannotCancelCancel: return "a cancel cannot target another cancel"
        case .notifierInUse: return "the notifier already has a wait armed; one notifier, one wait at a time"
        case .errno(let e): return "errno \(e): \(String(cString: strerror(e)))"
        }
    }
}
