/// Sending into a closed `LoopChannel` or `LoopInbox`.
///
/// Why a type of its own: it is the one failure a sender has to handle on purpose (the
/// consumer has gone away, so stop producing), and a distinct type lets it be caught
/// without also catching `CancellationError`, which a sender suspended in
/// `LoopChannel.send(_:)` throws when its own task is cancelled. The element that could
/// not be sent is dropped.
public struct ChannelClosedError: Error, Sendable, Equatable, CustomStringConvertible {
    public init() {}
    public var description: String { "the channel is closed" }
}
