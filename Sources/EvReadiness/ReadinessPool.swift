#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop

// The thread pool: regular-file I/O and pread/pwrite, and the closes that wait for them.
extension ReadinessLoop {
    func submitToPool(_ c: Completion) {
        let id = nextJobID
        nextJobID &+= 1
        guard let job = BlockingPool.Job(id: id, completion: c) else {
            preconditionFailure("EvLoop: \(c.kind) cannot run on the thread pool")
        }
        c.backendState = -Int(id)
        poolJobs.append(c)
        pool.submit(job)
    }

    /// Withdraws pool job `j` if no worker has taken it yet: it completes with `raw`
    /// (`.canceled`, or `.timedOut` for a deadline). False when a worker is running it (it
    /// reports its real result when done).
    func withdrawPoolJob(_ j: Completion, raw: Int = -Int(ECANCELED)) -> Bool {
        guard pool.cancel(id: jobID(j)) else { return false }
        poolJobs.remove(j)
        j.backendState = 0
        complete(j, raw: raw)
        return true
    }

    /// Withdraws every pool job that `matches` and that no worker has taken yet. Returns
    /// whether a matching job is running (and so still uses its descriptor).
    @discardableResult
    func withdrawPoolJobs(where matches: (Completion) -> Bool) -> Bool {
        var running = false
        var p = poolJobs.head
        while let j = p {
            p = j.waiterNext
            if matches(j) && !withdrawPoolJob(j) { running = true }
        }
        return running
    }

    /// Ends a `.close` parked behind pool jobs (see `submitClose`) with `.canceled`; the
    /// descriptor stays open.
    func cancelParkedClose(_ close: Completion) {
        parkedCloses.remove(close)
        close.backendState = 0
        complete(close, raw: -Int(ECANCELED))
    }

    /// A pool result: job ids are unique per activation, so the id alone names the
    /// activation that submitted it (a cancelled job never posts a result).
    func finishJob(id: UInt64, raw: Int) {
        var p = poolJobs.head
        while let c = p {
            if c.backendState < 0 && jobID(c) == id {
                poolJobs.remove(c)
                c.backendState = 0
                if raw == -Int(EAGAIN), c.fd >= 0 {
                    let fd = c.fd
                    // The descriptor was non-blocking after all: a socket or pipe that got
                    // a number the loop had seen as a file. Wait for readiness instead.
                    ensureSlot(fd)
                    table[Int(fd)].kind = .pollable
                    addWaiter(c, fd: fd, needs: c.kind.readinessNeeded)
                } else {
                    complete(c, raw: raw)
                }
                break
            }
            p = c.waiterNext
        }
        // A close waits for running jobs on its descriptor; run it once they are done.
        var q = parkedCloses.head
        while let close = q {
            q = close.waiterNext
            let fd = close.fd
            var busy = false
            var j = poolJobs.head
            while let x = j {
                if x.fd == fd { busy = true; break }
                j = x.waiterNext
            }
            if !busy {
                parkedCloses.remove(close)
                close.backendState = 0
                complete(close, raw: Syscalls.perform(close))
            }
        }
    }

    func drainWake() {
        // EAGAIN: already drained by an earlier wake-up in this batch; harmless.
        wake.drain()
        pool.drainResults { id, raw in finishJob(id: id, raw: raw) }
    }
}
