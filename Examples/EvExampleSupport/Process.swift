#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev

/// Process-wide setup the example servers and client share.
public enum ExampleProcess {
    /// Creates the loop for `--backend` (nil = auto-detect) and prints how it was chosen,
    /// as `PROGRAM: backend ...` (the line scripts and tests check), or exits with the reason.
    ///
    /// Detection is `makeBestLoop`: io_uring, then epoll, then poll, remembering why each
    /// earlier one was skipped; an explicit backend (or `EV_BACKEND`) is strict and never
    /// falls back, so a benchmark asked to run on io_uring cannot silently measure epoll.
    public static func openLoop(program: String, backend: Backend?) -> LoopCore {
        do {
            let (loop, selection) = try makeBestLoop(backend: backend)
            Report.say("\(program): \(describe(selection, requested: backend))")
            return loop
        } catch {
            Report.fail(program, "cannot create an event loop: \(error)")
        }
    }

    /// What every example server does first, once its options are checked, in the order it
    /// must happen: blocks SIGINT and SIGTERM, raises the descriptor limit, then opens and
    /// describes the loop (`openLoop`).
    ///
    /// The signals are blocked before any thread exists (the server's other loop threads,
    /// and the threads a loop starts for blocking work, such as its file thread pool), so
    /// that every thread inherits the mask and they are only ever read from the signalfd
    /// (see `blockSignals`).
    public static func startServer(program: String, backend: Backend?) -> LoopCore {
        blockSignals([SIGINT, SIGTERM])
        raiseDescriptorLimit()
        return openLoop(program: program, backend: backend)
    }

    /// The selection as the examples print it. `BackendSelection` says "forced by
    /// EV_BACKEND" for any forced choice; when the choice came from `--backend`, say so.
    public static func describe(_ selection: BackendSelection, requested: Backend?) -> String {
        if requested != nil && selection.forced {
            return "backend \(selection.backend) (requested with --backend)"
        }
        return selection.description
    }

    /// Raises the soft RLIMIT_NOFILE to the hard limit and returns the new soft limit.
    ///
    /// Many distributions still start processes with a soft limit of 1024 descriptors,
    /// which a server with a thousand clients (or a client opening a thousand connections)
    /// exceeds; the hard limit is usually far higher, and raising the soft limit up to it
    /// needs no privilege.
    @discardableResult
    public static func raiseDescriptorLimit() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_RESOURCE, &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(RLIMIT_NOFILE_RESOURCE, &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }

    private static var RLIMIT_NOFILE_RESOURCE: __rlimit_resource_t {
        __rlimit_resource_t(UInt32(RLIMIT_NOFILE.rawValue))
    }

    /// Blocks `signals` in the calling thread, and so in every thread it starts afterwards
    /// (threads inherit the mask), or exits with the reason.
    ///
    /// `SignalWatcher` reads signals from a signalfd; the kernel delivers a process-directed
    /// signal to any thread that does not block it, and if one thread left SIGINT unblocked
    /// the default action (terminate) would win over the watcher. So the mask must be in
    /// place in every thread, which is simplest to get by blocking in the main thread before
    /// any other thread exists (PITFALLS H5).
    public static func blockSignals(_ signals: [Int32]) {
        do {
            try SignalWatcher.block(signals)
        } catch {
            Report.fail("evloop-example", "cannot block signals: \(error)")
        }
    }

    /// A name for an errno value ("EPERM"), for messages a script or a person greps.
    public static func errnoName(_ code: Int32) -> String {
        switch code {
        case EPERM: return "EPERM"
        case ENOENT: return "ENOENT"
        case EINTR: return "EINTR"
        case EBADF: return "EBADF"
        case EAGAIN: return "EAGAIN"
        case ENOMEM: return "ENOMEM"
        case EACCES: return "EACCES"
        case EFAULT: return "EFAULT"
        case EBUSY: return "EBUSY"
        case EINVAL: return "EINVAL"
        case EMFILE: return "EMFILE"
        case ENFILE: return "ENFILE"
        case ENOSYS: return "ENOSYS"
        case EOPNOTSUPP: return "EOPNOTSUPP"
        case EADDRINUSE: return "EADDRINUSE"
        case EADDRNOTAVAIL: return "EADDRNOTAVAIL"
        case ECONNREFUSED: return "ECONNREFUSED"
        case ECONNRESET: return "ECONNRESET"
        case EPIPE: return "EPIPE"
        default: return "errno \(code)"
        }
    }

    /// Parses an errno name given on a command line ("EPERM", "ENOSYS", or a number).
    public static func errnoValue(named name: String) -> Int32? {
        let upper = name.uppercased()
        for code in Int32(1)...Int32(200) where errnoName(code) == upper { return code }
        if let n = Int32(name), n > 0, n < 4096 { return n }
        return nil
    }
}
