#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EvLoop

// Connects to a Unix stream listener whose accept queue is full.
//
// A non-blocking AF_UNIX connect(2) fails with EAGAIN when the listener's queue is full
// (TCP would answer EINPROGRESS and retry the SYN itself), and nothing can be polled for
// room in the queue: a blocking connect sleeps on the listener's own wait queue, which is
// what io_uring does for such a connect in a kernel worker. So that the readiness backends
// wait the same way, and EAGAIN never reaches a callback, the engine keeps such connects
// in `connectRetries` and tries each again every `connectRetryInterval` (the loop's wait
// is capped at that while any is there); a deadline on the connect bounds the wait, and a
// cancel, a close or `cancelAll` withdraws it like any waiting operation.
extension ReadinessLoop {
    /// How often a connect refused with EAGAIN is tried again.
    static let connectRetryInterval: UInt64 = 2_000_000   // 2 ms

    /// backendState of a connect in `connectRetries`.
    static let connectRetryTag = 1 << 42

    /// Starts (or restarts) the connect `c`: EINPROGRESS waits for writability, EAGAIN
    /// (a full Unix listener) joins the retries, anything else completes it.
    func startConnect(_ c: Completion) {
        let r = Syscalls.perform(c)
        if r == -Int(EINPROGRESS) {
            // Non-blocking connect: the socket becomes writable when the handshake ends
            // either way; SO_ERROR then tells which (Syscalls.finishConnect).
            addWaiter(c, fd: c.fd, needs: ReadyBits.writable)
        } else if r == -Int(EAGAIN) {
            c.backendState = Self.connectRetryTag
            connectRetries.append(c)
        } else {
            complete(c, raw: r)
        }
    }

    /// The wait timeout, capped while a connect waits for its next try.
    @inline(__always)
    func cappingForConnectRetries(_ timeout: UInt64?) -> UInt64? {
        guard !connectRetries.isEmpty else { return timeout }
        return min(timeout ?? .max, Self.connectRetryInterval)
    }

    /// Tries every waiting connect again (after the loop's wait).
    @inline(__always)
    func retryConnects() {
        if !connectRetries.isEmpty { retryWaitingConnects() }
    }

    private func retryWaitingConnects() {
        var p = connectRetries.head
        while let c = p {
            p = c.waiterNext
            connectRetries.remove(c)
            c.backendState = 0
            startConnect(c)
        }
    }

    /// Takes back a waiting connect (cancel, deadline, close): completes it with `raw`.
    func withdrawConnectRetry(_ c: Completion, raw: Int) {
        connectRetries.remove(c)
        c.backendState = 0
        complete(c, raw: raw)
    }

    /// Withdraws the waiting connects that `matches`, completing them with `raw`.
    func withdrawConnectRetries(where matches: (Completion) -> Bool, raw: Int) {
        var p = connectRetries.head
        while let c = p {
            p = c.waiterNext
            if matches(c) { withdrawConnectRetry(c, raw: raw) }
        }
    }
}
