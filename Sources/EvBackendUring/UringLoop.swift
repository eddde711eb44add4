import EvLoop
import CLiburing
// PLACEHOLDER (being written)
public final class UringLoop: LoopCore {
    public init(entries: UInt32 = 256) throws(BackendUnavailable) { super.init(backend: .ioUring) }
}
