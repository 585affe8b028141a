package org.edgevit.bench.core;

import java.io.File;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The bench-core job runner on the host JVM with {@link MeanRunner}: what the cross-language test
 * (tests/test_jobs_java.py) runs over a job folder the Python side wrote, then validates in Python.
 * Usage: java -cp CLASSES org.edgevit.bench.core.HostMain FILES_DIR
 */
public final class HostMain {
    private HostMain() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: HostMain FILES_DIR");
            System.exit(2);
        }
        File files = new File(args[0]);
        DeviceProbe probe = new DeviceProbe() {
            @Override
            public Map<String, String> deviceInfo() {
                Map<String, String> m = new LinkedHashMap<>();
                m.put("model", "host-jvm");
                m.put("manufacturer", System.getProperty("java.vendor", ""));
                m.put("os", System.getProperty("os.name", ""));
                m.put("abi", System.getProperty("os.arch", ""));
                m.put("app_version", "");
                return m;
            }

            @Override
            public Map<String, Object> thermal() {
                return DeviceProbe.NONE.thermal();
            }

            @Override
            public Double peakMemoryMb() {
                Runtime rt = Runtime.getRuntime();
                return (rt.totalMemory() - rt.freeMemory()) / (1024.0 * 1024.0);
            }

            @Override
            public long[] battery() {
                return new long[]{-1350000L, 4012000L};
            }
        };
        try (Heartbeat beat = new Heartbeat(files, "0.1.0", 200).start()) {
            List<Map<String, Object>> results = new JobRunner(files, job -> new MeanRunner(), probe, beat, "0.1.0")
                    .runPending();
            System.out.println(results.size() + " jobs run");
        }
    }
}
