package org.edgevit.bench.core;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * What the app reads from Android around a job (Build, PowerManager thermal status and headroom,
 * ActivityManager / Debug memory, BatteryManager current and voltage). The app module implements it;
 * {@link #NONE} reports nothing (null), never an invented value.
 */
public interface DeviceProbe {
    /** model, manufacturer, os, abi, app_version. */
    Map<String, String> deviceInfo();

    /** {status (0..6 or null), headroom (or null)}. */
    Map<String, Object> thermal();

    /** Peak memory of the process in MB, or null. */
    Double peakMemoryMb();

    /** {current in microamperes, voltage in microvolts}, or null when the device has no reading. */
    long[] battery();

    DeviceProbe NONE = new DeviceProbe() {
        @Override
        public Map<String, String> deviceInfo() {
            Map<String, String> m = new LinkedHashMap<>();
            m.put("model", System.getProperty("os.arch", ""));
            m.put("manufacturer", "");
            m.put("os", System.getProperty("os.name", "") + " " + System.getProperty("os.version", ""));
            m.put("abi", System.getProperty("os.arch", ""));
            m.put("app_version", "");
            return m;
        }

        @Override
        public Map<String, Object> thermal() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("status", null);
            m.put("headroom", null);
            return m;
        }

        @Override
        public Double peakMemoryMb() {
            return null;
        }

        @Override
        public long[] battery() {
            return null;
        }
    };
}
