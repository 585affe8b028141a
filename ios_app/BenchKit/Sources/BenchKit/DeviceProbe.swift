// reference_ios_app.device_info / thermal: model identifier (utsname.machine, e.g. iPhone15,2), iOS version,
// ProcessInfo.thermalState, battery level, peak memory (task_vm_info phys_footprint).
import Foundation
#if canImport(UIKit)
import UIKit
#endif

public struct DeviceProbe {
    public init() {}

    public func modelIdentifier() -> String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    public func device() -> DeviceDoc {
        let v = ProcessInfo.processInfo.operatingSystemVersion
        return DeviceDoc(model: modelIdentifier(), manufacturer: "Apple",
                         os: "iOS \(v.majorVersion).\(v.minorVersion).\(v.patchVersion)", abi: "arm64", appVersion: appVersion)
    }

    /// ProcessInfo.ThermalState raw value: 0 nominal, 1 fair, 2 serious, 3 critical (serious+ = throttled row).
    public func thermal() -> Thermal {
        Thermal(status: ProcessInfo.processInfo.thermalState.rawValue, headroom: nil)
    }

    /// Battery level 0...1, or nil when unknown (shown in the app; energy is not measurable on iOS).
    public func batteryLevel() -> Double? {
        #if canImport(UIKit)
        UIDevice.current.isBatteryMonitoringEnabled = true
        let level = UIDevice.current.batteryLevel
        return level < 0 ? nil : Double(level)
        #else
        return nil
        #endif
    }

    public func peakMemoryMb() -> Double? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count) }
        }
        return kr == KERN_SUCCESS ? Double(info.ledger_phys_footprint_peak) / 1_048_576 : nil
    }
}
