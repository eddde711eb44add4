// swift-tools-version:6.0
import PackageDescription

// EvLoop: a completion-based event loop for Swift on Linux (see README.md).
// The library depends on nothing but the C library and liburing (Debian's liburing-dev,
// installed by scripts/setup.sh when missing). Benchmarks live in Benchmarks/, a separate
// package, so that their dependencies never reach users of the library.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "EvLoop",
    products: [
        // Pick the backend at compile time by depending on exactly one of these (README,
        // "Choosing a backend at compile time"), or on `Ev` for all three with runtime selection.
        // EvEpoll and EvPoll never reach CLiburing, so they build on a machine without
        // liburing-dev; scripts/check-products.sh proves it by hiding liburing and building them.
        .library(name: "Ev", targets: ["Ev"]),                                   // all backends, makeBestLoop(), async
        .library(name: "EvLoop", targets: ["EvLoop"]),                           // the core and watchers, no backend
        .library(name: "EvEpoll", targets: ["EvLoop", "EvReadiness", "EvBackendEpoll"]), // EpollLoop
        .library(name: "EvPoll", targets: ["EvLoop", "EvReadiness", "EvBackendPoll"]),   // PollLoop
        .library(name: "EvUring", targets: ["EvLoop", "EvBackendUring"]),        // UringLoop (needs liburing)
        .library(name: "EvAsync", targets: ["EvLoop", "EvAsync"]),               // async/await, with any of the above
        .executable(name: "ev-echo-tcp", targets: ["ev-echo-tcp"]),
        .executable(name: "ev-echo-udp", targets: ["ev-echo-udp"]),
        .executable(name: "ev-echo-client", targets: ["ev-echo-client"]),
        .executable(name: "ev-backend-probe", targets: ["ev-backend-probe"]),
        .executable(name: "ev-echo-tcp-async", targets: ["ev-echo-tcp-async"]),
        .executable(name: "ev-run", targets: ["ev-run"]),
        .executable(name: "ev-http", targets: ["ev-http"]),
        .executable(name: "ev-http-async", targets: ["ev-http-async"]),
    ],
    targets: [
        // Small C shims for system calls Swift cannot reach directly (variadic syscall()).
        .target(name: "CEvSys"),
        // The Concurrency runtime's cancellation-handler entry points, for EvAsync's awaits
        // (Swift code cannot call them: see the header).
        .target(name: "CEvTask"),
        // liburing, found with pkg-config; its static inline helpers import directly.
        .systemLibrary(
            name: "CLiburing",
            pkgConfig: "liburing",
            providers: [.apt(["liburing-dev"])]
        ),
        .target(name: "EvLoop", dependencies: ["CEvSys"], swiftSettings: strict),
        // The readiness engine shared by the epoll and poll backends.
        .target(name: "EvReadiness", dependencies: ["EvLoop", "CEvSys"], swiftSettings: strict),
        .target(name: "EvBackendPoll", dependencies: ["EvLoop", "EvReadiness", "CEvSys"], swiftSettings: strict),
        .target(name: "EvBackendEpoll", dependencies: ["EvLoop", "EvReadiness", "CEvSys"], swiftSettings: strict),
        .target(name: "EvBackendUring", dependencies: ["EvLoop", "CLiburing", "CEvSys"], swiftSettings: strict),
        // async/await on a loop: the loop as TaskExecutor + SerialExecutor, awaitable operations.
        .target(name: "EvAsync", dependencies: ["EvLoop", "CEvSys", "CEvTask"], swiftSettings: strict),
        .target(
            name: "Ev",
            dependencies: ["EvLoop", "EvBackendPoll", "EvBackendEpoll", "EvBackendUring", "EvAsync", "CEvSys"],
            swiftSettings: strict
        ),
        .executableTarget(name: "ev-echo-tcp", dependencies: ["Ev", "EvExampleSupport"], path: "Examples/ev-echo-tcp", swiftSettings: strict),
        .executableTarget(name: "ev-echo-udp", dependencies: ["Ev", "EvExampleSupport"], path: "Examples/ev-echo-udp", swiftSettings: strict),
        .executableTarget(name: "ev-echo-tcp-async", dependencies: ["Ev", "EvExampleSupport"], path: "Examples/ev-echo-tcp-async", swiftSettings: strict),
        .executableTarget(name: "ev-echo-client", dependencies: ["Ev", "EvExampleSupport"], path: "Examples/ev-echo-client", swiftSettings: strict),
        .executableTarget(name: "ev-run", dependencies: ["Ev", "EvExampleSupport"], path: "Examples/ev-run", swiftSettings: strict),
        // Option parsing and reporting shared by the examples (hand-written: the package
        // takes no dependencies, not even for its examples).
        .target(name: "EvExampleSupport", dependencies: ["Ev"], path: "Examples/EvExampleSupport", swiftSettings: strict),
        // The HTTP examples' request parser, fixed responses and statistics (shared by the
        // callback and async servers, unit-tested by EvHTTPSupportTests).
        .target(name: "EvHTTPSupport", dependencies: ["Ev", "EvExampleSupport"], path: "Examples/EvHTTPSupport", swiftSettings: strict),
        .executableTarget(name: "ev-http", dependencies: ["Ev", "EvExampleSupport", "EvHTTPSupport"], path: "Examples/ev-http", swiftSettings: strict),
        // The same server with async/await (one task per connection on the loop).
        .executableTarget(name: "ev-http-async", dependencies: ["Ev", "EvExampleSupport", "EvHTTPSupport"], path: "Examples/ev-http-async", swiftSettings: strict),
        // The seccomp filter ev-backend-probe installs to show io_uring fallback (a small
        // C BPF program; kept out of the library's CEvSys because only the example needs it).
        .target(name: "CEvExampleSupport", path: "Examples/CEvExampleSupport"),
        .executableTarget(name: "ev-backend-probe", dependencies: ["Ev", "EvExampleSupport", "CEvExampleSupport"], path: "Examples/ev-backend-probe", swiftSettings: strict),
        .testTarget(name: "EvLoopTests", dependencies: ["EvLoop", "Ev"], swiftSettings: strict),
        .testTarget(name: "EvConformanceTests", dependencies: ["Ev", "CEvSys", "CEvTask"], swiftSettings: strict),
        // End-to-end tests of the example programs: they spawn the built executables
        // (found next to the test bundle), so they link nothing but Ev.
        .testTarget(name: "EvHTTPSupportTests", dependencies: ["EvHTTPSupport"], path: "Tests/EvHTTPSupportTests", swiftSettings: strict),
        // In-process tests of the examples' shared support (how the async servers accept).
        .testTarget(name: "EvExampleSupportTests", dependencies: ["Ev", "EvExampleSupport"], path: "Tests/EvExampleSupportTests", swiftSettings: strict),
        .testTarget(name: "EvExampleTests", dependencies: ["Ev"], path: "Tests/EvExampleTests", swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
