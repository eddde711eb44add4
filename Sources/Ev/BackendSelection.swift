#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Which backend a program got at startup, and why.
///
/// Silent fallback hides a performance loss (PITFALLS C9), so selection keeps the reason
/// every preferred backend was skipped: the errno of the failed setup and, for io_uring,
/// the `kernel.io_uring_disabled` value when it is readable.
public struct BackendSelection: Sendable, CustomStringConvertible {
    /// The backend the loop runs on.
    public var backend: Backend
    /// True when `EV_BACKEND` (or an explicit request) chose it rather than detection.
    public var forced: Bool
    /// Who forced it: "EV_BACKEND" or "an explicit request"; nil when detection chose.
    public var forcedBy: String?
    /// The backends tried before it, each with the reason it could not be used.
    public var skipped: [BackendUnavailable]

    public var description: String {
        var s = "backend \(backend)"
        if forced {
            s += " (forced by \(forcedBy ?? BackendSelection.environmentVariable))"
        } else if skipped.isEmpty {
            s += " (the best available)"
        }
        for u in skipped { s += "; skipped \(u.backend): \(u.reason)" }
        return s
    }

    /// The environment variable that forces a backend: `EV_BACKEND=io_uring|epoll|poll`.
    public static let environmentVariable = "EV_BACKEND"
}

/// The reasons runtime selection can fail.
public enum BackendSelectionError: Error, Sendable, CustomStringConvertible {
    /// `EV_BACKEND` (or `--backend`) named something that is not a backend.
    case unknownBackend(String)
    /// A forced backend could not be initialized. Forcing is strict: it never falls back.
    case forcedBackendUnavailable(BackendUnavailable)
    /// No backend at all initialized (each with its reason).
    case noBackendAvailable([BackendUnavailable])

    public var description: String {
        switch self {
        case .unknownBackend(let name):
            return "unknown backend '\(name)' (expected io_uring, epoll or poll)"
        case .forcedBackendUnavailable(let u):
            return "forced \(u)"
        case .noBackendAvailable(let all):
            return "no backend available: " + all.map(\.description).joined(separator: "; ")
        }
    }
}

/// Creates the best loop for this machine.
///
/// With `backend` nil and no `EV_BACKEND` in the environment, tries io_uring, then epoll,
/// then poll, and returns the first that initializes (its setup includes a real probe: a
/// ring that cannot complete a nop is not "available"). With `backend` set, or
/// `EV_BACKEND=name`, it makes exactly that backend or throws: a forced choice never falls
/// back silently.
///
/// ```swift
/// let (loop, selection) = try makeBestLoop()
/// print("running on", selection)   // "backend io_uring (the best available)"
/// ```
public func makeBestLoop(
    backend requested: Backend? = nil,
    environment: [String: String]? = nil
) throws(BackendSelectionError) -> (loop: LoopCore, selection: BackendSelection) {
    var forced = requested
    var forcedBy: String? = requested == nil ? nil : "an explicit request"
    if forced == nil {
        let value: String?
        if let environment {
            value = environment[BackendSelection.environmentVariable]
        } else {
            value = getenv(BackendSelection.environmentVariable).map { String(cString: $0) }
        }
        if let value, !value.isEmpty, value != "auto" {
            guard let b = Backend(name: value) else { throw .unknownBackend(value) }
            forced = b
            forcedBy = BackendSelection.environmentVariable
        }
    }
    if let forced {
        do {
            let loop = try makeLoop(forced)
            return (loop, BackendSelection(backend: forced, forced: true, forcedBy: forcedBy, skipped: []))
        } catch {
            throw .forcedBackendUnavailable(error)
        }
    }
    var skipped: [BackendUnavailable] = []
    for candidate in Backend.allCases {
        do {
            let loop = try makeLoop(candidate)
            return (loop, BackendSelection(backend: candidate, forced: false, forcedBy: nil, skipped: skipped))
        } catch {
            skipped.append(error)
        }
    }
    throw .noBackendAvailable(skipped)
}

/// Parses a `--backend` option value: "auto" (nil) or a backend name.
public func parseBackendOption(_ value: String) throws(BackendSelectionError) -> Backend? {
    if value == "auto" || value.isEmpty { return nil }
    guard let b = Backend(name: value) else { throw .unknownBackend(value) }
    return b
}
