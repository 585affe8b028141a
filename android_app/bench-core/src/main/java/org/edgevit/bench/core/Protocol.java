package org.edgevit.bench.core;

import java.time.Instant;
import java.time.temporal.ChronoUnit;

/** Constants of the device job protocol (Python: edgevit_deploy/device_bench/jobs/protocol.py). */
public final class Protocol {
    public static final int VERSION = 1;
    public static final String JOBS_DIR = "jobs";
    public static final String RESULTS_DIR = "results";
    public static final String STATUS_FILE = "status.json";
    public static final String JOB_FILE = "job.json";

    private Protocol() {
    }

    public static String utcNow() {
        return Instant.now().truncatedTo(ChronoUnit.SECONDS).toString();
    }
}
