// swift-tools-version: 6.2
import PackageDescription

/// Our own targets treat warnings as errors (dependencies are not affected).
let strictSettings: [SwiftSetting] = [.treatAllWarnings(as: .error)]

let package = Package(
    name: "swift-mosquitto",
    products: [
        .library(name: "Mosquitto", targets: ["Mosquitto"]),
        .library(name: "MosquittoTesting", targets: ["MosquittoTesting"]),
        .executable(name: "mqtt", targets: ["mqtt"]),
        .executable(name: "mqtt-sensor-demo", targets: ["SensorDemo"]),
        .executable(name: "mqtt-request-response-demo", targets: ["RequestResponseDemo"]),
        .executable(name: "mqtt-service-demo", targets: ["ServiceDemo"]),
        .executable(name: "mqtt-soak", targets: ["MosquittoSoak"]),
        .executable(name: "mqtt-bench", targets: ["MosquittoBenchmark"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // libmosquitto 2.0 as a system library: only `module.modulemap` and `shim.h` live here.
        // OpenSSL (libssl, libcrypto) is linked too: TLS credentials from memory build their
        // `SSL_CTX` in `shim.h` (libssl-dev: the headers; libmosquitto's pkg-config file names
        // neither).
        .systemLibrary(
            name: "CMosquitto",
            path: "Modules/CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev", "libssl-dev"])]
        ),
        // The Swift API. Every `import CMosquitto` in it is `internal import`: no C type reaches
        // its public interface, and the C calls stay in Bridge/ (the handle, the callbacks,
        // property lists, the event loop's epoll shim) and the error mapping.
        .target(
            name: "Mosquitto",
            dependencies: [
                "CMosquitto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings + [.enableUpcomingFeature("InternalImportsByDefault")]
        ),
        // A real-broker fixture: starts and stops the `mosquitto` binary for tests.
        .target(
            name: "MosquittoTesting",
            dependencies: [],
            swiftSettings: strictSettings
        ),
        // `mqtt pub` / `mqtt sub`: the command-line client.
        .executableTarget(
            name: "mqtt",
            dependencies: ["Mosquitto", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        // The README's demo: an embedded broker, a sensor publisher and a subscriber.
        .executableTarget(
            name: "SensorDemo",
            dependencies: ["Mosquitto", "MosquittoTesting"],
            path: "Examples/SensorDemo",
            swiftSettings: strictSettings
        ),
        // A request/response pair over MQTT 5 (MQTTClient.request / respond).
        .executableTarget(
            name: "RequestResponseDemo",
            dependencies: ["Mosquitto", "MosquittoTesting"],
            path: "Examples/RequestResponseDemo",
            swiftSettings: strictSettings
        ),
        // The client as a service in a ServiceGroup, with swift-log logging.
        .executableTarget(
            name: "ServiceDemo",
            dependencies: [
                "Mosquitto", "MosquittoTesting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/ServiceDemo",
            swiftSettings: strictSettings
        ),
        // `mqtt-soak soak` (mixed QoS load across broker restarts) and `mqtt-soak cycles` (the
        // leak check's workload): scripts/soak.sh and scripts/leak-check.sh.
        .executableTarget(
            name: "MosquittoSoak",
            dependencies: ["Mosquitto", "MosquittoTesting"],
            path: "Tools/MosquittoSoak",
            swiftSettings: strictSettings
        ),
        // The benchmark's C baseline: the same workloads written directly against libmosquitto.
        .target(
            name: "CMosquittoBaseline",
            dependencies: ["CMosquitto"],
            path: "Benchmarks/CMosquittoBaseline"
        ),
        // The benchmark's role processes, one client each, so that CPU time and peak RSS are per
        // client: the C baseline in a pure C program, the Swift client in a Swift program that
        // links only `Mosquitto` (no Foundation). Built as dependencies of `mqtt-bench`.
        .executableTarget(
            name: "MosquittoBenchmarkCRole",
            dependencies: ["CMosquittoBaseline"],
            path: "Benchmarks/MosquittoBenchmarkCRole"
        ),
        .executableTarget(
            name: "MosquittoBenchmarkSwiftRole",
            dependencies: ["Mosquitto", "CMosquittoBaseline"],
            path: "Benchmarks/MosquittoBenchmarkSwiftRole",
            swiftSettings: strictSettings
        ),
        // `mqtt-bench`: starts a broker, runs every workload through both role executables, prints
        // the table with Swift/C ratios (scripts/bench.sh).
        .executableTarget(
            name: "MosquittoBenchmark",
            dependencies: ["MosquittoTesting", "CMosquittoBaseline", "MosquittoBenchmarkCRole", "MosquittoBenchmarkSwiftRole"],
            path: "Benchmarks/MosquittoBenchmark",
            swiftSettings: strictSettings
        ),
        // Unit tests: no broker.
        .testTarget(
            name: "MosquittoTests",
            dependencies: ["Mosquitto"],
            swiftSettings: strictSettings
        ),
        // Integration tests: a real `mosquitto` started through the fixture. They also run the
        // `mqtt` and `mqtt-soak` executables (built alongside) as separate processes.
        .testTarget(
            name: "MosquittoIntegrationTests",
            dependencies: [
                "Mosquitto", "MosquittoTesting", "mqtt", "MosquittoSoak",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
