// reference_app.ModelRunner / timing_loop, and the summary the app shows (the host recomputes its own).
import Foundation

/// bench-core's / reference_app's ModelRunner: compile (Core ML only), load once, run one input.
public protocol ModelRunner: AnyObject {
    func compile(_ package: URL) throws -> URL
    func load(_ model: URL, runtime: RuntimeRef) throws
    func run(_ input: [Float], shape: [Int]) throws -> (values: [Float], shape: [Int])
    func runtimeVersion() -> String
    func close()
}

public struct JobTimeout: Error, CustomStringConvertible {
    public let description: String
}

func nowMs() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e6 }

public enum TimingLoop {
    /// The first inference timed apart, `warmup` untimed runs, then `iterations` timed ones, one by one;
    /// JobTimeout when `deadline` (DispatchTime) passes.
    public static func run(_ runner: ModelRunner, input: [Float], shape: [Int], warmup: Int, iterations: Int,
                           deadline: DispatchTime, heartbeat: Heartbeat) throws -> (firstMs: Double, latencies: [Double]) {
        var t0 = nowMs()
        _ = try runner.run(input, shape: shape)
        let first = nowMs() - t0
        heartbeat.update(phase: "warmup")
        for i in 0..<warmup {
            heartbeat.update(iteration: i)
            _ = try runner.run(input, shape: shape)
            if DispatchTime.now() > deadline { throw JobTimeout(description: "job timed out during warm-up (\(i + 1) of \(warmup) runs)") }
        }
        heartbeat.update(phase: "timing", iteration: 0)
        var latencies: [Double] = []
        for i in 0..<iterations {
            heartbeat.update(iteration: i)
            t0 = nowMs()
            _ = try runner.run(input, shape: shape)
            latencies.append(nowMs() - t0)
            if DispatchTime.now() > deadline { throw JobTimeout(description: "job timed out after \(i + 1) of \(iterations) timed runs") }
        }
        return (first, latencies)
    }
}

/// What the app's screen shows for a finished job (stats.summarise on the host is what is stored).
public struct Stats {
    public let median: Double, mean: Double, min: Double, p90: Double
    public init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        func pct(_ q: Double) -> Double {
            let pos = q * Double(s.count - 1), lo = Int(pos.rounded(.down)), hi = Swift.min(lo + 1, s.count - 1)
            return s[lo] + (s[hi] - s[lo]) * (pos - Double(lo))
        }
        median = pct(0.5); p90 = pct(0.9); min = s[0]; mean = s.reduce(0, +) / Double(s.count)
    }
}
