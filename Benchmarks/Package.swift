// swift-tools-version:6.0
import PackageDescription

// EvLoop's benchmark suite: libxev's benchmarks ported to EvLoop, with SwiftNIO as a peer.
// A separate package so that SwiftNIO never becomes a dependency of the library.
// Run everything with ./run.sh (see ../BENCHMARKS.md); release builds only.
let package = Package(
    name: "EvLoopBenchmarks",
    dependencies: [
        .package(name: "EvLoop", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // Timing, CPU time, thread pinning, the malloc counter and the result lines every
        // benchmark program prints (shared by the EvLoop and the SwiftNIO programs).
        .target(name: "BenchSupport"),
        // libxev's suite on EvLoop: ping-pongs, ping-udp1, udp_pummel_1v1, million-timers,
        // async1/2/4/8, async_pummel_1/2/4/8 (every one takes --backend).
        .executableTarget(
            name: "evbench",
            dependencies: ["BenchSupport", .product(name: "Ev", package: "EvLoop")]
        ),
        // The SwiftNIO peers: a TCP echo ping-pong, a million scheduled tasks, and the HTTP
        // hello server of the http group (NIOHTTP1).
        .executableTarget(
            name: "niobench",
            dependencies: [
                "BenchSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // Reads the result lines of a run and prints the table (medians, ranges, ratios).
        .executableTarget(name: "bench-report", dependencies: ["BenchSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
