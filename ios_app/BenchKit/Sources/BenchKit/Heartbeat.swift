// reference_app.Heartbeat: status.json rewritten atomically every `interval` seconds and at once on every
// phase change; `seq` grows with every write; stop(state: "done") writes the final status.
import Foundation

public final class Heartbeat {
    private let files: URL
    private let interval: TimeInterval
    private let lock = NSLock()
    private var timer: DispatchSourceTimer?
    public private(set) var seq = 0
    public private(set) var jobId: String?
    public private(set) var phase = "start"
    public private(set) var iteration = 0
    public var doneJobs: [String] = []

    public init(files: URL, interval: TimeInterval = 0.5) { self.files = files; self.interval = interval }

    @discardableResult public func start() -> Heartbeat {
        beat()
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue.global(qos: .utility))
        t.schedule(deadline: .now() + interval, repeating: interval)
        t.setEventHandler { [weak self] in self?.beat() }
        t.resume()
        timer = t
        return self
    }

    public func update(jobId: String? = nil, phase: String? = nil, iteration: Int? = nil) {
        lock.lock()
        var changed = false
        if let j = jobId, j != self.jobId { self.jobId = j; changed = true }
        if let p = phase, p != self.phase { self.phase = p; changed = true }
        if let i = iteration { self.iteration = i }
        lock.unlock()
        if changed { beat() }
    }

    public func beat(state: String = "running") {
        lock.lock(); defer { lock.unlock() }
        seq += 1
        let doc = StatusDoc(state: state, seq: seq, jobId: jobId, phase: phase, iteration: iteration,
                            updatedAt: utcNow(), appVersion: appVersion, doneJobs: doneJobs)
        try? atomicWriteJSON(doc, to: files.appendingPathComponent(statusFile))
    }

    public func stop(state: String = "done") {
        timer?.cancel(); timer = nil
        lock.lock(); jobId = nil; phase = "idle"; lock.unlock()
        beat(state: state)
    }
}
