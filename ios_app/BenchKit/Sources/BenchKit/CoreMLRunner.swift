// reference_ios_app.CoremlModelRunner: MLModel.compileModel(at:) (timed apart: compile_ms), load with
// MLModelConfiguration.computeUnits from the job's delegate, one prediction per call.
import CoreML
import Foundation

public enum ComputeUnitsError: Error, CustomStringConvertible {
    case unknown(String)
    case notCoreML(String)
    public var description: String {
        switch self {
        case .unknown(let u): return "compute units \(u) do not exist; one of cpu_only, cpu_and_gpu, cpu_and_neural_engine, all"
        case .notCoreML(let n): return "the iOS app runs Core ML models only, not \(n)"
        }
    }
}

/// The job's delegate -> MLComputeUnits (the host maps the sweep's cpu/gpu/ane/all to these names).
public func computeUnits(_ name: String) throws -> MLComputeUnits {
    switch name {
    case "cpu_only": return .cpuOnly
    case "cpu_and_gpu": return .cpuAndGPU
    case "cpu_and_neural_engine": return .cpuAndNeuralEngine
    case "all": return .all
    default: throw ComputeUnitsError.unknown(name)
    }
}

public final class CoreMLRunner: ModelRunner {
    private var model: MLModel?
    private var inputName = ""
    private var outputName = ""
    private var units = ""

    public init() {}

    public func compile(_ package: URL) throws -> URL {
        try MLModel.compileModel(at: package)   // an .mlmodelc in the app's temporary directory
    }

    public func load(_ model: URL, runtime: RuntimeRef) throws {
        guard runtime.name == "coreml" else { throw ComputeUnitsError.notCoreML(runtime.name) }
        let config = MLModelConfiguration()
        config.computeUnits = try computeUnits(runtime.delegate)
        units = runtime.delegate
        let m = try MLModel(contentsOf: model, configuration: config)
        inputName = m.modelDescription.inputDescriptionsByName.keys.sorted().first ?? ""
        outputName = m.modelDescription.predictedProbabilitiesName
            ?? m.modelDescription.outputDescriptionsByName.keys.sorted().first ?? ""
        self.model = m
    }

    public func run(_ input: [Float], shape: [Int]) throws -> (values: [Float], shape: [Int]) {
        guard let model else { throw ProtocolError.invalid("run before load") }
        let array = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)
        let ptr = array.dataPointer.bindMemory(to: Float.self, capacity: input.count)
        for (i, v) in input.enumerated() { ptr[i] = v }
        let features = try MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(multiArray: array)])
        let out = try model.prediction(from: features)
        guard let value = out.featureValue(for: outputName) else { throw ProtocolError.invalid("no output \(outputName)") }
        if let arr = value.multiArrayValue {
            let n = arr.count
            var values = [Float](repeating: 0, count: n)
            for i in 0..<n { values[i] = arr[i].floatValue }
            return (values, [1, n])
        }
        // a classifier: class index -> probability, read back in class-index order
        let dict = value.dictionaryValue
        let keys = dict.keys.compactMap { ($0 as? NSNumber)?.intValue }.sorted()
        return (keys.map { dict[NSNumber(value: $0)]?.floatValue ?? 0 }, [1, keys.count])
    }

    public func runtimeVersion() -> String { "coreml (iOS \(ProcessInfo.processInfo.operatingSystemVersionString), \(units))" }
    public func close() { model = nil }
}
