// The SwiftUI shell: runs the pending jobs of Documents/ when launched (by `devicectl device process launch`
// or a tap) and whenever it comes back to the foreground; shows progress. The logic is BenchKit's.
import BenchKit
import SwiftUI

@main
struct EdgeVitBenchApp: App {
    @StateObject private var model = BenchModel()
    @Environment(\.scenePhase) private var scenePhase

    var body: some Scene {
        WindowGroup {
            ContentView(model: model)
                .onChange(of: scenePhase) { phase in if phase == .active { model.runPending() } }
        }
    }
}

@MainActor
final class BenchModel: ObservableObject {
    @Published var line = "waiting for jobs in Documents/jobs"
    @Published var finished: [String] = []
    @Published var battery = ""
    private var running = false

    func runPending() {
        guard !running else { return }
        running = true
        line = "running the pending jobs (progress: Documents/status.json)"
        UIApplication.shared.isIdleTimerDisabled = true   // the screen stays on while jobs run
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let probe = DeviceProbe()
        battery = probe.batteryLevel().map { "battery \(Int($0 * 100))% at start" } ?? ""
        Task.detached(priority: .userInitiated) {
            let runner = JobRunner(files: documents, probe: probe) { CoreMLRunner() }
            let results = runner.runPending()
            await MainActor.run {
                self.finished += results.map { r in
                    let median = Stats(r.latenciesMs).map { String(format: "%.2f ms", $0.median) } ?? (r.error ?? "")
                    return "\(r.jobId) \(r.status) \(median)"
                }
                self.line = "\(results.count) job(s) run; waiting for jobs"
                self.battery += probe.batteryLevel().map { ", \(Int($0 * 100))% now" } ?? ""
                UIApplication.shared.isIdleTimerDisabled = false
                self.running = false
            }
        }
    }
}

struct ContentView: View {
    @ObservedObject var model: BenchModel
    var body: some View {
        NavigationStack {
            List {
                Section("Status") { Text(model.line); if !model.battery.isEmpty { Text(model.battery) } }
                Section("Results") { ForEach(model.finished, id: \.self) { Text($0).font(.caption.monospaced()) } }
            }
            .navigationTitle("EdgeVit Bench")
            .toolbar { Button("Run pending") { model.runPending() } }
        }
    }
}
