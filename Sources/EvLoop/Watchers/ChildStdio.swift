#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// What a spawned child's standard input, output or error is connected to.
///
/// Why explicit: a child gets exactly descriptors 0, 1 and 2 and nothing else of the
/// parent (PITFALLS H4), so each of the three is named at spawn time. `.pipe` is the usual
/// choice for a child whose output the program reads (or whose input it writes) through
/// the loop, like libuv's UV_CREATE_PIPE: `spawn` creates the pipe, gives the child its end,
/// closes that end in the parent, and hands back the parent's end as a loop-ready
/// `ByteStream` (`Subprocess.standardOutput` and its siblings).
///
/// ```swift
/// let child = try Subprocess.spawn(path: "/bin/ls", stdin: .null, stdout: .pipe, loop: loop)
/// let listing = child.standardOutput!          // the parent's read end; close it when done
/// try listing.read(loop: loop, completion: reading, buffer: buffer) { _, result in
///     guard case .success(let n) = result else { return .disarm }   // .endOfFile: ls is done
///     print(String(decoding: buffer[..<n], as: UTF8.self), terminator: "")
///     return .rearm
/// }
/// ```
public enum StdioTarget: Sendable, Hashable {
    /// The parent's own descriptor 0, 1 or 2.
    case inherit
    /// /dev/null.
    case null
    /// A descriptor of the parent (for example one end of a `UnixSocket.pair`), which the
    /// child gets as 0, 1 or 2. The parent keeps its own copy and closes it when done
    /// (usually at once after `spawn`, so that only the child holds it).
    case fd(Int32)
    /// A new pipe between parent and child: the child reads its stdin from it, or writes
    /// its stdout or stderr into it. The parent's end is close-on-exec, in the blocking mode
    /// the `loop` given to `spawn` prefers, and the caller's to close (through the loop).
    case pipe
}

/// The descriptors `Subprocess.spawn` gives a child as 0, 1 and 2, and the pipes it creates
/// for `.pipe` targets: created before the spawn, the child's ends closed in the parent
/// right after it, everything closed if the spawn fails. It owns what it created until
/// `spawn` hands the parent ends over (to the new `Subprocess`, and so to the caller).
struct ChildStdio {
    /// Per target, what `cevsys_spawn` makes the child's descriptor 0, 1 or 2 from: a
    /// descriptor to dup2 (a pipe's child end, a `.fd`), or CEVSYS_STDIO_INHERIT / _NULL.
    private(set) var childDescriptors: [Int32]
    /// The parent's ends of the pipes, by target; nil where the target is not `.pipe`.
    private(set) var parentEnds: [ByteStream?] = [nil, nil, nil]
    /// The child's ends of the pipes, which the parent closes once the child has them.
    private var childEnds: [Int32] = []

    /// Creates a pipe for every `.pipe` in `targets` (stdin, stdout, stderr), the parent's
    /// end blocking or not as `blockingParentEnds` says; nil (no loop given) with a `.pipe`
    /// target is `.invalidArgument`, before anything is created.
    init(targets: [StdioTarget], blockingParentEnds: Bool?) throws(EvError) {
        childDescriptors = targets.map { target in
            switch target {
            case .inherit: return Int32(CEVSYS_STDIO_INHERIT)
            case .null: return Int32(CEVSYS_STDIO_NULL)
            case .fd(let fd): return fd
            case .pipe: return Int32(CEVSYS_STDIO_INHERIT)   // replaced below
            }
        }
        guard targets.contains(.pipe) else { return }
        guard let blocking = blockingParentEnds else { throw .invalidArgument }
        do {
            for (index, target) in targets.enumerated() where target == .pipe {
                try makePipe(for: index, blockingParentEnd: blocking)
            }
        } catch {
            closeChildEnds()
            closeParentEnds()
            throw error
        }
    }

    /// One pipe for target `index`: the child reads stdin (0) from it and writes stdout (1)
    /// and stderr (2) into it; the parent holds the other end.
    private mutating func makePipe(for index: Int, blockingParentEnd: Bool) throws(EvError) {
        let (readEnd, writeEnd) = try PipeCalls.open(flags: 0)
        let ends = index == 0 ? (child: readEnd, parent: writeEnd) : (child: writeEnd, parent: readEnd)
        let child: Int32
        do {
            child = try Self.aboveStandardDescriptors(ends.child)
        } catch {
            _ = close(ends.parent)
            throw error
        }
        childEnds.append(child)
        childDescriptors[index] = child
        let parent = try Self.aboveStandardDescriptors(ends.parent)
        parentEnds[index] = ByteStream(fd: parent, isSocket: false)
        // The child's end stays blocking (what programs expect of their stdio); O_NONBLOCK
        // belongs to the open file, and the two ends of a pipe are two open files.
        try SocketCalls.setBlocking(parent, blockingParentEnd)
    }

    /// `fd` moved to a number above 2 (close-on-exec), closing the original; `fd` itself if
    /// it is above 2 already. Why: a parent that runs with 0, 1 or 2 closed (a daemon) gets
    /// those numbers from pipe2, and the child's descriptors are set up in order, 0 to 2:
    /// setting up 0 would then replace a pipe end meant to become 1 or 2.
    private static func aboveStandardDescriptors(_ fd: Int32) throws(EvError) -> Int32 {
        guard fd <= 2 else { return fd }
        let moved = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        let e = cevsys_errno()
        _ = close(fd)
        guard moved >= 0 else { throw EvError(errno: e) }
        return moved
    }

    /// Closes the child's ends in the parent (after the spawn, or when it failed).
    mutating func closeChildEnds() {
        for fd in childEnds { _ = close(fd) }
        childEnds.removeAll()
    }

    /// Closes the parent's ends (when the spawn failed, so nothing is left behind).
    mutating func closeParentEnds() {
        for case let end? in parentEnds { _ = close(end.fd) }
        parentEnds = [nil, nil, nil]
    }
}
