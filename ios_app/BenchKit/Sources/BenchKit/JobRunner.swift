// reference_app.run_pending / run_job: every pending job (no result file yet) in name order; a job that
// throws is a result with status "failed" and the reason, never a crash of the app.
import Foundation

public final class JobRunner {
    public let files: URL
    public let makeRunner: () -> ModelRunner
    public let probe: DeviceProbe

    public init(files: URL, probe: DeviceProbe = DeviceProbe(), makeRunner: @escaping () -> ModelRunner) {
        self.files = files; self.probe = probe; self.makeRunner = makeRunner
    }

    /// runPending: run jobs until none is left (jobs pushed meanwhile are run too), then heartbeat "done".
    @discardableResult public func runPending() -> [ResultDoc] {
        let beat = Heartbeat(files: files).start()
        var results: [ResultDoc] = []
        while true {
            let pending = pendingJobs(files: files)
            if pending.isEmpty { break }
            for id in pending { results.append(runJob(id, heartbeat: beat)) }
        }
        beat.stop(state: "done")
        return results
    }

    /// runJob: compile, load, time, save the outputs of the job's fixed inputs, then write the result atomically.
    public func runJob(_ jobId: String, heartbeat: Heartbeat) -> ResultDoc {
        let folder = files.appendingPathComponent(jobsDir).appendingPathComponent(jobId)
        let started = utcNow()
        heartbeat.update(jobId: jobId, phase: "load", iteration: 0)
        let thermalBefore = probe.thermal()
        var runtime = RuntimeDoc(name: "", version: "", delegate: "", threads: 1)
        var result = ResultDoc(jobId: jobId, status: "failed", error: nil, device: probe.device(), runtime: runtime,
                               compileMs: nil, loadMs: nil, firstMs: nil, warmup: 0, latenciesMs: [],
                               peakMemoryMb: nil, thermalBefore: thermalBefore, thermalAfter: Thermal(status: nil, headroom: nil),
                               outputs: [], startedAt: started, finishedAt: "")
        let runner = makeRunner()
        defer { runner.close() }
        do {
            let job = try Job.read(folder: folder)
            runtime = RuntimeDoc(name: job.runtime.name, version: "", delegate: job.runtime.delegate, threads: job.runtime.threads)
            result.warmup = job.warmup
            let deadline = DispatchTime.now() + job.timeoutS
            let inputs = try job.inputs.map { t -> (values: [Float], shape: [Int]) in
                let a = try Npy.read(folder.appendingPathComponent(t.file))
                guard a.shape == t.shape else { throw ProtocolError.invalid("\(t.file): shape \(a.shape), job says \(t.shape)") }
                return a
            }
            var t0 = nowMs()
            let compiled = try runner.compile(folder.appendingPathComponent(job.model.file))
            result.compileMs = nowMs() - t0
            t0 = nowMs()
            try runner.load(compiled, runtime: job.runtime)
            result.loadMs = nowMs() - t0
            runtime.version = runner.runtimeVersion()
            let timed = try TimingLoop.run(runner, input: inputs[0].values, shape: inputs[0].shape, warmup: job.warmup,
                                           iterations: job.iterations, deadline: deadline, heartbeat: heartbeat)
            result.firstMs = timed.firstMs
            result.latenciesMs = timed.latencies
            if job.saveOutputs {
                heartbeat.update(phase: "outputs")
                for (i, x) in inputs.enumerated() {
                    let y = try runner.run(x.values, shape: x.shape)
                    let rel = "\(resultsDir)/\(jobId)/out\(i).npy"
                    try Npy.write(y.values, shape: y.shape, to: files.appendingPathComponent(rel))
                    result.outputs.append(OutputDoc(input: i, name: "output", file: rel, shape: y.shape))
                }
            }
            result.status = "ok"
        } catch {
            result.status = "failed"
            result.error = "\(type(of: error)): \(error)"
            result.latenciesMs = []; result.outputs = []
        }
        result.runtime = runtime
        result.peakMemoryMb = probe.peakMemoryMb()
        result.thermalAfter = probe.thermal()
        result.finishedAt = utcNow()
        try? atomicWriteJSON(result, to: files.appendingPathComponent(resultsDir).appendingPathComponent("\(jobId).json"))
        heartbeat.doneJobs.append(jobId)
        return result
    }
}
