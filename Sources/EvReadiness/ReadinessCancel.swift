#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop

// Cancelling one operation, or all of them.
extension ReadinessLoop {
    package final func backendCancel(_ cancel: Completion, target: Completion) {
        let state = target.backendState
        if state < 0 {
            // In the pool: withdrawn if no worker has taken it; otherwise too late, and
            // the target reports its real result when the worker finishes.
            complete(cancel, raw: withdrawPoolJob(target) ? 0 : -Int(EALREADY))
        } else if state & Self.parkedCloseTag != 0 {
            cancelParkedClose(target)
            complete(cancel, raw: 0)
        } else if state & Self.waitingTag != 0, target.fd >= 0 {
            let fd = target.fd
            let s = table + Int(fd)
            removeWaiter(target, slot: s)
            // A cancelled operation leaves no registration behind (PITFALLS A5): the
            // descriptor may be closed right after this, without the loop.
            settle(fd, dropIdle: true)
            complete(target, raw: -Int(ECANCELED))
            complete(cancel, raw: 0)
        } else {
            // Every operation the engine starts either waits, is in the pool, or has
            // already completed (the core reports `.notFound` for those).
            complete(cancel, raw: -Int(ENOENT))
        }
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
    }
}
