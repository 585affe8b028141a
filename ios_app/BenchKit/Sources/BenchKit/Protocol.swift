// The device job protocol, version 1 (edgevit_deploy/device_bench/jobs/schema/*.schema.json; protocol.py).
// Every JSON key is spelled out in CodingKeys so a test can check the sources against the schemas.
import Foundation

public let supportedProtocol = 1
public let appVersion = "0.1.0"   // = protocol.APP_VERSION and MARKETING_VERSION in project.yml
public let jobsDir = "jobs"
public let resultsDir = "results"
public let statusFile = "status.json"
public let jobFile = "job.json"

public enum ProtocolError: Error, CustomStringConvertible {
    case invalid(String)
    public var description: String { if case .invalid(let s) = self { return s }; return "protocol error" }
}

public struct Tensor: Codable {
    public var name: String
    public var file: String
    public var shape: [Int]
    public var dtype: String = "float32"
    enum CodingKeys: String, CodingKey { case name = "name", file = "file", shape = "shape", dtype = "dtype" }
}

public struct ModelRef: Codable {
    public var name, file, sha256, format, precision: String
    public var inputShape: [Int]
    enum CodingKeys: String, CodingKey {
        case name = "name", file = "file", sha256 = "sha256", format = "format", precision = "precision"
        case inputShape = "input_shape"
    }
}

public struct RuntimeRef: Codable {
    public var name: String       // "coreml" on iOS
    public var delegate: String   // compute units: cpu_only, cpu_and_gpu, cpu_and_neural_engine, all
    public var threads: Int
    enum CodingKeys: String, CodingKey { case name = "name", delegate = "delegate", threads = "threads" }
}

public struct Job: Codable {
    public var protocolVersion: Int
    public var jobId: String
    public var createdAt: String
    public var model: ModelRef
    public var runtime: RuntimeRef
    public var warmup: Int
    public var iterations: Int
    public var timeoutS: Double
    public var inputs: [Tensor]
    public var saveOutputs: Bool
    enum CodingKeys: String, CodingKey {
        case protocolVersion = "protocol", jobId = "job_id", createdAt = "created_at", model = "model"
        case runtime = "runtime", warmup = "warmup", iterations = "iterations", timeoutS = "timeout_s"
        case inputs = "inputs", saveOutputs = "save_outputs"
    }

    /// protocol.read_job: decode jobs/<id>/job.json; the folder name must be the job id.
    public static func read(folder: URL) throws -> Job {
        let data = try Data(contentsOf: folder.appendingPathComponent(jobFile))
        let job = try JSONDecoder().decode(Job.self, from: data)
        guard job.protocolVersion == supportedProtocol else {
            throw ProtocolError.invalid("\(folder.lastPathComponent)/job.json: protocol \(job.protocolVersion), this app speaks \(supportedProtocol)")
        }
        guard job.jobId == folder.lastPathComponent else {
            throw ProtocolError.invalid("job.json: job_id \(job.jobId) differs from its folder \(folder.lastPathComponent)")
        }
        return job
    }
}

public struct Thermal: Codable {
    public var status: Int?      // ProcessInfo.ThermalState.rawValue: 0 nominal, 1 fair, 2 serious, 3 critical
    public var headroom: Double? // Android only: always null on iOS
    enum CodingKeys: String, CodingKey { case status = "status", headroom = "headroom" }
    public func encode(to encoder: Encoder) throws {   // nulls are written, never left out
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(status, forKey: .status); try c.encode(headroom, forKey: .headroom)
    }
}

public struct DeviceDoc: Codable {
    public var model, manufacturer, os, abi, appVersion: String
    enum CodingKeys: String, CodingKey {
        case model = "model", manufacturer = "manufacturer", os = "os", abi = "abi", appVersion = "app_version"
    }
}

public struct RuntimeDoc: Codable {
    public var name, version, delegate: String
    public var threads: Int
    enum CodingKeys: String, CodingKey { case name = "name", version = "version", delegate = "delegate", threads = "threads" }
}

public struct OutputDoc: Codable {
    public var input: Int
    public var name, file: String
    public var dtype = "float32"
    public var shape: [Int]
    enum CodingKeys: String, CodingKey { case input = "input", name = "name", file = "file", dtype = "dtype", shape = "shape" }
}

public struct ResultDoc: Encodable {
    public var jobId: String
    public var status: String            // "ok" | "failed"
    public var error: String?
    public var device: DeviceDoc
    public var runtime: RuntimeDoc
    public var compileMs: Double?
    public var loadMs: Double?
    public var firstMs: Double?
    public var warmup: Int
    public var latenciesMs: [Double]
    public var peakMemoryMb: Double?
    public var thermalBefore: Thermal
    public var thermalAfter: Thermal
    public var powerSamples: [[Double]] = []   // none on iOS: no per-app current / voltage reading exists
    public var outputs: [OutputDoc]
    public var startedAt, finishedAt: String
    enum CodingKeys: String, CodingKey {
        case protocolVersion = "protocol", jobId = "job_id", status = "status", error = "error", device = "device"
        case runtime = "runtime", compileMs = "compile_ms", loadMs = "load_ms", firstMs = "first_ms"
        case warmup = "warmup", latenciesMs = "latencies_ms", peakMemoryMb = "peak_memory_mb"
        case thermalBefore = "thermal_before", thermalAfter = "thermal_after", powerSamples = "power_samples"
        case outputs = "outputs", startedAt = "started_at", finishedAt = "finished_at"
    }
    public func encode(to encoder: Encoder) throws {   // required keys are written even when null
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(supportedProtocol, forKey: .protocolVersion); try c.encode(jobId, forKey: .jobId)
        try c.encode(status, forKey: .status); try c.encode(error, forKey: .error)
        try c.encode(device, forKey: .device); try c.encode(runtime, forKey: .runtime)
        try c.encode(compileMs, forKey: .compileMs); try c.encode(loadMs, forKey: .loadMs)
        try c.encode(firstMs, forKey: .firstMs); try c.encode(warmup, forKey: .warmup)
        try c.encode(latenciesMs, forKey: .latenciesMs); try c.encode(peakMemoryMb, forKey: .peakMemoryMb)
        try c.encode(thermalBefore, forKey: .thermalBefore); try c.encode(thermalAfter, forKey: .thermalAfter)
        try c.encode(powerSamples, forKey: .powerSamples); try c.encode(outputs, forKey: .outputs)
        try c.encode(startedAt, forKey: .startedAt); try c.encode(finishedAt, forKey: .finishedAt)
    }
}

public struct StatusDoc: Encodable {
    public var state: String   // "running" | "done"
    public var seq: Int
    public var jobId: String?
    public var phase: String   // start, load, warmup, timing, outputs, idle
    public var iteration: Int
    public var updatedAt: String
    public var appVersion: String
    public var doneJobs: [String]
    enum CodingKeys: String, CodingKey {
        case protocolVersion = "protocol", state = "state", seq = "seq", jobId = "job_id", phase = "phase"
        case iteration = "iteration", updatedAt = "updated_at", appVersion = "app_version", doneJobs = "done_jobs"
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(supportedProtocol, forKey: .protocolVersion); try c.encode(state, forKey: .state)
        try c.encode(seq, forKey: .seq); try c.encode(jobId, forKey: .jobId); try c.encode(phase, forKey: .phase)
        try c.encode(iteration, forKey: .iteration); try c.encode(updatedAt, forKey: .updatedAt)
        try c.encode(appVersion, forKey: .appVersion); try c.encode(doneJobs, forKey: .doneJobs)
    }
}

/// protocol.atomic_write_bytes: write a temp file in the same folder, then rename over the target.
public func atomicWrite(_ data: Data, to url: URL) throws {
    let dir = url.deletingLastPathComponent()
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
    try data.write(to: tmp, options: .atomic)
    if FileManager.default.fileExists(atPath: url.path) {
        _ = try FileManager.default.replaceItemAt(url, withItemAt: tmp)
    } else {
        try FileManager.default.moveItem(at: tmp, to: url)
    }
}

public func atomicWriteJSON<T: Encodable>(_ value: T, to url: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    try atomicWrite(encoder.encode(value), to: url)
}

public func utcNow() -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    return f.string(from: Date())
}

/// protocol.pending_jobs: job folders with a job.json and no result file, in name order (the resume rule).
public func pendingJobs(files: URL) -> [String] {
    let root = files.appendingPathComponent(jobsDir)
    let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
    return names.sorted().filter { name in
        FileManager.default.fileExists(atPath: root.appendingPathComponent(name).appendingPathComponent(jobFile).path)
            && !FileManager.default.fileExists(atPath: files.appendingPathComponent(resultsDir)
                .appendingPathComponent("\(name).json").path)
    }
}
