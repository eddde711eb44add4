/// What a completion's callback asks the loop to do next.
///
/// Returning `.rearm` repeats the operation exactly as it is configured in
/// `Completion.operation` at the moment the callback returns (the callback may change it,
/// for example to move a timer's deadline or advance a write buffer). Returning `.disarm`
/// ends the operation and leaves the completion `.dead`, free to be configured and added again.
public enum CallbackAction: Sendable, Equatable {
    case rearm
    case disarm
}
