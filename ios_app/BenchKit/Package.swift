// swift-tools-version:5.7
// BenchKit: the iOS benchmark app's logic, without UI (job decoding, TimingLoop over ModelRunner, Stats,
// result encoding, .npy read/write, Heartbeat, JobRunner, CoreMLRunner). Mirrors, function for function,
// edgevit_deploy/device_bench/jobs/reference_app.py + reference_ios_app.py (what the tests run).
import PackageDescription

let package = Package(
    name: "BenchKit",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [.library(name: "BenchKit", targets: ["BenchKit"])],
    targets: [.target(name: "BenchKit", path: "Sources/BenchKit")]
)
