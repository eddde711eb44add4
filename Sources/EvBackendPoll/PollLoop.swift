import EvLoop
import EvReadiness
// PLACEHOLDER (being written)
public final class PollLoop: ReadinessLoop {
    public init() throws(BackendUnavailable) { super.init(backend: .poll) }
}
