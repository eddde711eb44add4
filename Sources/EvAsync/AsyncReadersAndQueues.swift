import EvLoop

// Awaitable forms of the two classes that own their completions: `StreamReader` (one read
// at a time into the reader's own buffer) and `WriteQueue` (owned bytes, written in order).
// Like every awaited operation they run on the loop's executor, report the callback forms'
// errors and map task cancellation onto the loop's cancellation.

extension StreamReader {
    /// Reads once into the reader's own buffer and returns the bytes read, valid until the
    /// next read (the buffer is reused): the awaited form of the reader's callback, which
    /// gets the same `Result`. Throws `EvError.endOfFile` when the peer has closed its side,
    /// `.timedOut` when `deadline` passed first, and `CancellationError` when the task was
    /// cancelled (bytes a read had already received are returned first).
    ///
    /// ```swift
    /// let reader = try StreamReader(socket: client)
    /// while true {
    ///     let bytes = try await reader.read(deadline: .within(.seconds(30)), on: executor)
    ///     try await client.writeAll(bytes, on: executor)          // an echo
    /// }
    /// ```
    ///
    /// Backpressure needs no `pause`/`resume` here: a task that does not await the next
    /// read reads nothing (those two act on the callback form only). The awaited read and
    /// the callback form exclude each other, since both use the one buffer: this throws
    /// `.completionActive` while the reader is started (`start(loop:callback:)`) or another
    /// awaited read is in flight, and `start` throws it during an awaited read.
    nonisolated(nonsending)
    public func read(deadline: Deadline = .none, on executor: LoopExecutor) async throws -> UnsafeRawBufferPointer {
        executor.preconditionOnLoopThread("StreamReader.read(deadline:on:)")
        guard !isStarted, !isAwaitingRead else { throw EvError.completionActive }
        isAwaitingRead = true
        defer { isAwaitingRead = false }
        let bytes = bufferBytes
        let operation: Operation = isSocket ? .recv(socket: fd, buffer: bytes) : .read(fd: fd, buffer: bytes)
        // The reader holds the buffer: keep it until the read has finished.
        defer { withExtendedLifetime(self) {} }
        let n = try readCount(try await executor.perform(operation, deadline: deadline))
        return UnsafeRawBufferPointer(rebasing: bytes[..<n])
    }
}

extension WriteQueue {
    /// Queues `bytes` behind what is queued already and suspends until they have been
    /// written, completely (resumed after short writes) and in queue order; returns the
    /// count written: the awaited `enqueue(loop:bytes:callback:)`. The queue keeps the
    /// bytes alive until then, as in the callback form.
    ///
    /// Throws what the request's callback would get: the write's error (`.brokenPipe`,
    /// `.connectionReset`), which also fails every write queued behind it, or `.canceled`.
    /// Cancelling the task cancels the queue (`cancel(loop:using:)`): a stream's writes
    /// cannot be withdrawn one by one without breaking the stream, so every write queued
    /// now fails with `.canceled`, and this one throws `CancellationError` (unless it was
    /// written completely first). A deadline is the queue's (`completion.deadline`, for
    /// each write the queue issues), as in the callback form.
    ///
    /// Water marks and the writability callback work as for the callback form, so a task
    /// that produces replies can also simply await each one: the await is the backpressure.
    nonisolated(nonsending)
    public func enqueue(bytes: OwnedBytes, on executor: LoopExecutor) async throws -> Int {
        executor.preconditionOnLoopThread("WriteQueue.enqueue(bytes:on:)")
        let loop = executor.loopUnchecked
        let write = WatcherAwait<Int>(executor: executor) {
            // An idle queue reports `.notFound` (the write finished meanwhile): nothing to do.
            try? self.cancel(loop: loop, using: Completion())
        }
        return try await write.run { _, deliver throws(EvError) in
            try self.enqueue(loop: loop, bytes: bytes) { _, result in
                deliver(result)
                return .disarm
            }
        }
    }

    /// `enqueue(bytes:on:)` of a copy of `bytes` (one allocation: the `OwnedBytes`).
    nonisolated(nonsending)
    public func enqueue(copying bytes: some Collection<UInt8>, on executor: LoopExecutor) async throws -> Int {
        try await enqueue(bytes: OwnedBytes(bytes), on: executor)
    }
}
