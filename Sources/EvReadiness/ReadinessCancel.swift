#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop

/// What became of an operation the loop tried to take back (`withdraw`).
enum Withdrawal {
    /// Taken back and completed with the result asked for.
    case withdrawn
    /// A pool thread is running it: it reports its real result when done.
    case running
    /// Nothing to take back (it has completed; the core reports `.notFound` for those).
    case notFound
}

// Cancelling one operation, or all of them, and expiring an operation's deadline: the
// same withdrawal, with -ECANCELED or -ETIMEDOUT.
extension ReadinessLoop {
    package final func backendCancel(_ cancel: Completion, target: Completion) {
        switch withdraw(target, raw: -Int(ECANCELED)) {
        case .withdrawn: complete(cancel, raw: 0)
        case .running: complete(cancel, raw: -Int(EALREADY))
        case .notFound: complete(cancel, raw: -Int(ENOENT))
        }
    }

    /// The deadline of `target` passed (the core keeps it in its heap: `DeadlineExpiring`).
    package final func backendExpire(_ target: Completion) {
        // A running pool job cannot be interrupted: it reports what it did (`Deadline`).
        _ = withdraw(target, raw: -Int(ETIMEDOUT))
    }

    /// Takes `target` back from wherever it waits and completes it with `raw`.
    private func withdraw(_ target: Completion, raw: Int) -> Withdrawal {
        let state = target.backendState
        if state < 0 {
            // In the pool: withdrawn if no worker has taken it; otherwise too late, and
            // the target reports its real result when the worker finishes.
            return withdrawPoolJob(target, raw: raw) ? .withdrawn : .running
        } else if state & Self.parkedCloseTag != 0 {
            cancelParkedClose(target)
            return .withdrawn
        } else if state & Self.connectRetryTag != 0 {
            withdrawConnectRetry(target, raw: raw)
            return .withdrawn
        } else if state & Self.waitingTag != 0, target.fd >= 0 {
            let fd = target.fd
            let s = table + Int(fd)
            removeWaiter(target, slot: s)
            // A withdrawn operation leaves no registration behind (PITFALLS A5): the
            // descriptor may be closed right after this, without the loop.
            settle(fd, dropIdle: true)
            complete(target, raw: raw)
            return .withdrawn
        }
        // Every operation the engine starts either waits, is in the pool, or has
        // already completed.
        return .notFound
    }

    package final func backendCancelAll() {
        for i in 0..<tableCapacity where !table[i].waiters.isEmpty {
            let s = table + i
            failWaiters(of: s, raw: -Int(ECANCELED))
            settle(Int32(i), dropIdle: true)
        }
        // Running jobs report their real results when their workers finish.
        withdrawPoolJobs(where: { _ in true })
        while let close = parkedCloses.head { cancelParkedClose(close) }
        withdrawConnectRetries(where: { _ in true }, raw: -Int(ECANCELED))
    }
}
