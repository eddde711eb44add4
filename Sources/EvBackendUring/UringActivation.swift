import EvLoop

/// What the io_uring loop knows about one activation of a completion: where it is in its
/// life (`phase`), how many SQEs name it and how many cancels aimed at it are in flight
/// (`sqes`, `cancels`), and facts that hold across phases (`flags`).
///
/// It lives packed in the core's `Completion.backendState` (one `Int` the core sets aside
/// for the backend; a completion has no other room for backend state), and every accessor
/// is `@inline(__always)`, so reading a phase or counting an SQE compiles to the shift,
/// mask and compare it did when this was a hand-packed bit set:
///
/// | bits  | field     |                                                                |
/// |-------|-----------|----------------------------------------------------------------|
/// | 0-15  | `sqes`    | SQEs that name the completion, in the ring or in the kernel   |
/// | 16-31 | `cancels` | ASYNC_CANCELs aimed at this activation whose CQE has not come |
/// | 32-39 | `phase`   | `Phase`                                                       |
/// | 40-47 | `flags`   | `Flags`                                                       |
///
/// `sqes` at the bottom: counting an SQE or a CQE is then a plain add or subtract.
///
/// The invariants a debug build checks at every phase change (`Phase.mayBecome` and
/// `checkEntering`): no SQE names an idle, parked or held activation; an activation in
/// flight has at least one; a held one has a cancel on its way; a parked one is not in the
/// kill queue (both queues link through `queueNext`).
struct UringActivation {
    /// The mutually exclusive states of an activation. The order matters: the phases
    /// before `submitted` are the ones outside the loop's `tracked` list, so membership
    /// is one compare (`isTracked`) and no flag of its own.
    enum Phase: UInt8 {
        /// Not in the loop's hands: a fresh activation, one completed without reaching
        /// the kernel, or one handed back to the core.
        case idle
        /// In `parked`, waiting for an SQE for its operation (the submission queue was
        /// full, or other work was already waiting: PITFALLS B1).
        case parked
        /// In `parked`, waiting for an SQE for the readiness poll it needs after an
        /// EAGAIN (the queue was full when the EAGAIN came back).
        case parkedForPoll
        /// In `parked`, waiting for an SQE for the POLLOUT poll of a non-blocking connect.
        case parkedForConnectPoll
        /// Its operation's SQE is in the ring or in the kernel.
        case submitted
        /// The kernel answered EAGAIN (PITFALLS D7); a one-shot POLL_ADD for the direction
        /// it needs is in flight, and the operation is resubmitted when it fires.
        case polling
        /// A non-blocking connect has started; a POLLOUT poll is in flight, and SO_ERROR
        /// gives the outcome when it fires.
        case connectPolling
        /// A `.cancel` whose IORING_OP_ASYNC_CANCEL is in flight.
        case cancelling
        /// Between two SQEs (its EAGAIN poll fired, or it got EINTR) while a cancel aimed at
        /// it is on its way to the kernel, which would find nothing: not resubmitted, and
        /// settled by that cancel's CQE. No operation SQE names it, but the linked timeout
        /// of the step that just ended may not have reported yet (its CQE only releases).
        case held
        /// Its final result is in `rawResult`; waiting for the CQEs of the other SQEs that
        /// name it (an internal cancel, a close's linked cancel) before the hand-off.
        case stored

        /// In the loop's `tracked` list: an SQE names it, or it is held or stored.
        @inline(__always) var isTracked: Bool { rawValue >= Phase.submitted.rawValue }

        /// Waiting in `parked`.
        @inline(__always) var isParked: Bool {
            rawValue >= Phase.parked.rawValue && rawValue <= Phase.parkedForConnectPoll.rawValue
        }

        /// The phases an activation in this phase may move to.
        func mayBecome(_ next: Phase) -> Bool {
            switch (self, next) {
            case (.idle, .parked), (.idle, .submitted), (.idle, .cancelling):
                return true
            case (.parked, .submitted), (.parkedForPoll, .polling), (.parkedForConnectPoll, .connectPolling),
                 (.parked, .idle), (.parkedForPoll, .idle), (.parkedForConnectPoll, .idle):
                return true
            case (.submitted, _), (.polling, _):
                return next != .idle && next != .cancelling
            case (.connectPolling, .stored), (.cancelling, .stored), (.held, .stored), (.stored, .idle):
                return true
            default:
                return false
            }
        }
    }

    /// The SQE an activation writes next: its own operation, or one of the two polls.
    enum Step {
        case operation
        case readinessPoll
        case connectPoll

        /// The phase while this SQE is in flight.
        @inline(__always) var inFlight: Phase {
            switch self {
            case .operation: return .submitted
            case .readinessPoll: return .polling
            case .connectPoll: return .connectPolling
            }
        }

        /// The phase while this SQE waits for room in the ring.
        @inline(__always) var parked: Phase {
            switch self {
            case .operation: return .parked
            case .readinessPoll: return .parkedForPoll
            case .connectPoll: return .parkedForConnectPoll
            }
        }
    }

    /// Facts orthogonal to the phase (each can hold in several phases, and together).
    struct Flags: OptionSet {
        var rawValue: UInt8
        @inline(__always) init(rawValue: UInt8) { self.rawValue = rawValue }

        /// A `.close` of its descriptor has gone through the loop: never resubmitted (the
        /// number may name another file by then). Set while submitted, polling or held,
        /// and read when the current SQE's CQE comes back, whatever phase that leads to.
        static let closing = Flags(rawValue: 1 << 0)
        /// An internal cancel was asked for (cancelAll, or a close on a kernel without
        /// IORING_ASYNC_CANCEL_FD): never resubmitted, and asked at most once. Distinct
        /// from `closing`: with CANCEL_FD a close sets `closing` alone (the kernel cancels
        /// by descriptor), and a later cancelAll must still send its own cancel.
        static let killed = Flags(rawValue: 1 << 1)
        /// In the loop's `killQueue`, waiting for an SQE for that internal cancel. It
        /// spans phase changes (the target's own CQE may arrive first, and it may be held).
        static let killQueued = Flags(rawValue: 1 << 2)
        /// A cancel has been reported successful for this activation. The only fact that
        /// outlives the hand-off: a cancel's CQE may come after its target's, and a second
        /// cancel in the same batch must then report "not found" (see `cancelFinished`).
        /// Cleared when the completion is added again.
        static let cancelSucceeded = Flags(rawValue: 1 << 3)
        /// The activation's linked timeout fired (its CQE said -ETIME): the kernel
        /// cancelled the operation for its deadline, and the hand-off reports -ETIMEDOUT
        /// (unless a user's cancel was reported successful first). It outlives the
        /// hand-off like `cancelSucceeded`: a user's cancel whose CQE comes later must
        /// then report "not found", since the target reports `.timedOut`.
        static let deadlineFired = Flags(rawValue: 1 << 4)
        /// Its read or write is on the polled ring (`PolledRing`), whose CQE completes it
        /// directly; the phase stays idle (the main ring has nothing of it), and a cancel
        /// is too late (polled I/O cannot be cancelled; it finishes in microseconds).
        static let polled = Flags(rawValue: 1 << 5)
        /// Its last receive (`.recv`) moved bytes and its CQE lacked
        /// IORING_CQE_F_SOCK_NONEMPTY: the kernel saw the socket's receive queue empty
        /// after it (TCP reports the bytes left, `tcp_inq_hint`). So the next receive on
        /// it, typically the rearm from that receive's callback, will find nothing, and
        /// is submitted with IORING_RECVSEND_POLL_FIRST (`UringLoop.prepare`). A hint,
        /// never a result: it outlives the hand-off and the next add, and one that is
        /// stale (another socket, data arrived meanwhile) costs a poll that is ready at
        /// once, after which the kernel receives as without it.
        static let socketDrained = Flags(rawValue: 1 << 6)
        /// A cancel found the operation running in a kernel worker (io-wq) and got
        /// -EALREADY: the kernel has interrupted the worker, so an EINTR (or EAGAIN) that
        /// comes back is the cancel's doing and must not be restarted: the operation ends
        /// cancelled. Without it a send blocked in a worker's sendmsg (a peer that reads
        /// nothing, on a socket whose read side was shut down) was restarted after the
        /// cancel's EINTR and blocked for good (test `cancelOfASendBlockedInTheKernelEnds`).
        static let cancelInterrupted = Flags(rawValue: 1 << 7)
    }

    var bits: Int

    /// A fresh activation: idle, no SQE, no cancel, no flag.
    @inline(__always) init() { bits = 0 }
    @inline(__always) init(bits: Int) { self.bits = bits }

    private static let phaseShift = 32
    private static let flagsShift = 40

    var phase: Phase {
        @inline(__always) get {
            // Only `set` writes these bits, always with a valid case, so no range check:
            // an enum without payloads is stored as its case index, which the raw values
            // (0, 1, 2, ...) equal.
            unsafeBitCast(UInt8(truncatingIfNeeded: bits &>> Self.phaseShift), to: Phase.self)
        }
        @inline(__always) set {
            #if DEBUG
            checkEntering(newValue)
            #endif
            bits = (bits & ~(0xFF << Self.phaseShift)) | (Int(newValue.rawValue) << Self.phaseShift)
        }
    }

    /// How many SQEs name the completion (in the ring, or in the kernel).
    var sqes: Int {
        @inline(__always) get { bits & 0xFFFF }
        @inline(__always) set {
            precondition(newValue >= 0 && newValue <= 0xFFFF, "EvLoop: io_uring SQE count out of range")
            bits = (bits & ~0xFFFF) | newValue
        }
    }

    /// How many ASYNC_CANCELs aimed at this activation are in flight.
    var cancels: Int {
        @inline(__always) get { (bits &>> 16) & 0xFFFF }
        @inline(__always) set {
            precondition(newValue >= 0 && newValue <= 0xFFFF, "EvLoop: io_uring cancel count out of range")
            bits = (bits & ~(0xFFFF << 16)) | (newValue << 16)
        }
    }

    var flags: Flags {
        @inline(__always) get { Flags(rawValue: UInt8(truncatingIfNeeded: bits &>> Self.flagsShift)) }
        @inline(__always) set {
            bits = (bits & ~(0xFF << Self.flagsShift)) | (Int(newValue.rawValue) << Self.flagsShift)
        }
    }

    /// Closed by `.close`, killed by an internal cancel, or interrupted by a cancel that
    /// found it running: must not be resubmitted.
    @inline(__always) var isDoomed: Bool { !flags.isDisjoint(with: [.closing, .killed, .cancelInterrupted]) }

    /// What is left after the hand-off (see `Flags.cancelSucceeded`,
    /// `Flags.deadlineFired` and `Flags.socketDrained`): an idle activation.
    @inline(__always) var handedOff: UringActivation {
        UringActivation(bits: bits & (Int(Flags([.cancelSucceeded, .deadlineFired, .socketDrained]).rawValue) << Self.flagsShift))
    }

    /// A new activation of the same completion (`UringLoop.backendSubmit`): idle, with
    /// only the `socketDrained` hint kept from the last one.
    @inline(__always) var added: UringActivation {
        UringActivation(bits: bits & (Int(Flags.socketDrained.rawValue) << Self.flagsShift))
    }

    #if DEBUG
    /// The invariants of a phase change, checked in debug builds (the callers count an
    /// SQE before entering a phase in flight, and drop it before leaving one).
    func checkEntering(_ next: Phase) {
        let current = phase
        precondition(current.mayBecome(next), "EvLoop: io_uring activation cannot go from \(current) to \(next)")
        switch next {
        case .idle:
            // Handed back, or a parked activation cancelled: nothing the kernel still holds
            // may name it (a later CQE would reach a completion that may be reused or freed).
            precondition(sqes == 0, "EvLoop: io_uring activation \(next) with \(sqes) SQEs naming it")
        case .parked, .parkedForPoll, .parkedForConnectPoll:
            // Parked again by a retry (from a phase in flight), the step that just ended may
            // still be named by its linked timeout: the kernel posts that CQE with the
            // operation's, and the same reap takes it next (test
            // `eagainPollsWaitForRoomInAFullRing(withDeadlines:)`). A first park has none.
            precondition(current != .idle || sqes == 0, "EvLoop: io_uring activation \(next) with \(sqes) SQEs naming it")
            precondition(!flags.contains(.killQueued),
                         "EvLoop: a parked io_uring activation cannot also wait in the kill queue")
        case .submitted, .polling, .connectPolling, .cancelling:
            precondition(sqes > 0, "EvLoop: io_uring activation \(next) with no SQE naming it")
        case .held:
            // `sqes` may be above 0: the CQE of the step that ended arrives before its linked
            // timeout's (test `operationWithADeadlineHeldForACancelAfterEAGAIN`; ev-http-async's
            // idle deadline on a write the shutdown cancelled stopped here when this asked
            // for no SQE at all).
            precondition(cancels > 0, "EvLoop: a held io_uring activation needs a cancel on its way (\(sqes) SQEs, \(cancels) cancels)")
        case .stored:
            break
        }
    }
    #endif
}

extension Completion {
    /// The io_uring loop's view of `backendState` (see `UringActivation`).
    var uring: UringActivation {
        @inline(__always) get { UringActivation(bits: backendState) }
        @inline(__always) set { backendState = newValue.bits }
    }
}
