import EvLoop
import EvReadiness
// PLACEHOLDER (being written)
public final class EpollLoop: ReadinessLoop {
    public init() throws(BackendUnavailable) { super.init(backend: .epoll) }
}
