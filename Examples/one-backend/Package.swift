// swift-tools-version:6.0
import PackageDescription

// Programs that depend on exactly one EvLoop backend, picked at compile time by the product
// they use (README.md, "Choosing a backend at compile time"). A separate package, so that
// each one sees EvLoop the way a user's package does: through its products only.
// scripts/check-products.sh builds them with liburing hidden: the epoll and poll programs
// must build and never link liburing; the io_uring one must fail, saying liburing is missing.
let package = Package(
    name: "one-backend",
    dependencies: [
        .package(name: "EvLoop", path: "../.."),
    ],
    targets: [
        // The timer the three programs below run, written against the core alone (the EvLoop
        // product, no backend): each program adds only the backend product it names.
        .target(name: "TimerCheck", dependencies: [.product(name: "EvLoop", package: "EvLoop")], path: "timer-check"),
        .executableTarget(name: "epoll-only", dependencies: [.product(name: "EvEpoll", package: "EvLoop"), "TimerCheck"], path: "epoll-only"),
        .executableTarget(name: "poll-only", dependencies: [.product(name: "EvPoll", package: "EvLoop"), "TimerCheck"], path: "poll-only"),
        .executableTarget(name: "uring-only", dependencies: [.product(name: "EvUring", package: "EvLoop"), "TimerCheck"], path: "uring-only"),
        .executableTarget(
            name: "epoll-async",
            dependencies: [.product(name: "EvEpoll", package: "EvLoop"), .product(name: "EvAsync", package: "EvLoop")],
            path: "epoll-async"
        ),
    ],
    swiftLanguageModes: [.v6]
)
