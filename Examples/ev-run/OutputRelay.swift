import Ev
import EvExampleSupport

/// Relays one of the child's output streams (the parent's end of its stdout or stderr
/// pipe) through the loop: every line printed with a label (`out: ...`, `err: ...`), or,
/// when counting, only the bytes and lines counted; at end of file the stream is closed
/// through the loop.
///
/// Why per stream: the child writes both pipes independently, so each has its own read in
/// flight and its own unfinished line; a line is printed only once it is complete (or at
/// end of file), so the child's lines come out whole even when a read ends mid-line.
final class OutputRelay {
    let label: String
    let stream: ByteStream
    let counting: Bool
    private(set) var bytes = 0
    private(set) var lines = 0
    /// Set once the stream has ended (end of file or an error) and its close has finished.
    private(set) var finished = false
    private(set) var error: EvError?

    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    /// The line being collected (printing), up to its newline.
    private var partialLine: [UInt8] = []
    /// Whether bytes of a line without its newline yet have arrived (counting).
    private var lineStarted = false
    private let reading = Completion()
    private let closing = Completion()

    init(label: String, stream: ByteStream, counting: Bool) {
        self.label = label
        self.stream = stream
        self.counting = counting
    }

    deinit { buffer.deallocate() }

    /// Starts reading; the read rearms itself until the stream ends.
    func start(loop: some EventLoop) throws(EvError) {
        try stream.read(loop: loop, completion: reading, buffer: buffer) { [unowned self] _, result in
            switch result {
            case .success(let n):
                relay(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
                return .rearm
            case .failure(.endOfFile):
                break
            case .failure(let e):
                error = e
            }
            // A last line without a newline still counts (and is printed).
            if !partialLine.isEmpty || lineStarted { emit() }
            close(loop: loop)
            return .disarm
        }
    }

    /// Lines longer than this are printed in pieces of this size, so that a child that
    /// never writes a newline cannot make the relay hold its whole output.
    private static let longestLine = 64 * 1024

    private func relay(_ chunk: UnsafeRawBufferPointer) {
        bytes += chunk.count
        var start = chunk.startIndex
        while let newline = chunk[start...].firstIndex(of: UInt8(ascii: "\n")) {
            take(chunk[start..<newline])
            emit()
            start = newline + 1
        }
        take(chunk[start...])
        if partialLine.count >= Self.longestLine { emit() }
    }

    /// Adds bytes to the line being collected (when counting, only notes that there is one).
    private func take(_ bytes: Slice<UnsafeRawBufferPointer>) {
        guard !bytes.isEmpty || counting else { return }
        if counting {
            lineStarted = lineStarted || !bytes.isEmpty
        } else {
            partialLine += bytes
        }
    }

    /// Ends the line being collected: prints it (unless counting) and counts it.
    private func emit() {
        lines += 1
        if !counting { Report.say("\(label): " + String(decoding: partialLine, as: UTF8.self)) }
        partialLine.removeAll(keepingCapacity: true)
        lineStarted = false
    }

    private func close(loop: some EventLoop) {
        do {
            try stream.close(loop: loop, completion: closing) { [unowned self] _, result in
                if case .failure(let e) = result, error == nil { error = e }
                finished = true
                return .disarm
            }
        } catch {
            self.error = error
            finished = true
        }
    }
}
