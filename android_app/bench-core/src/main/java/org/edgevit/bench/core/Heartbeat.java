package org.edgevit.bench.core;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * status.json, rewritten atomically by a background thread every interval and at once on every phase
 * change; seq grows with every write, so the host tells "still working" from "hung" or "killed".
 * Python twin: reference_app.Heartbeat.
 */
public final class Heartbeat implements AutoCloseable {
    private final File filesDir;
    private final String appVersion;
    private final long intervalMs;
    private long seq;
    private String jobId;
    private String phase = "start";
    private int iteration;
    private final List<String> doneJobs = new ArrayList<>();
    private ScheduledExecutorService timer;

    public Heartbeat(File filesDir, String appVersion, long intervalMs) {
        this.filesDir = filesDir;
        this.appVersion = appVersion;
        this.intervalMs = intervalMs;
    }

    public synchronized long seq() {
        return seq;
    }

    public Heartbeat start() {
        beat("running");
        timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "heartbeat");
            t.setDaemon(true);
            return t;
        });
        timer.scheduleAtFixedRate(() -> beat("running"), intervalMs, intervalMs, TimeUnit.MILLISECONDS);
        return this;
    }

    /** Set job / phase / iteration (null keeps a value); a new job or phase is written at once. */
    public void update(String newJob, String newPhase, Integer newIteration) {
        boolean changed = false;
        synchronized (this) {
            if (newJob != null && !newJob.equals(jobId)) {
                jobId = newJob;
                changed = true;
            }
            if (newPhase != null && !newPhase.equals(phase)) {
                phase = newPhase;
                changed = true;
            }
            if (newIteration != null) {
                iteration = newIteration;
            }
        }
        if (changed) {
            beat("running");
        }
    }

    public synchronized void jobDone(String id) {
        doneJobs.add(id);
    }

    public synchronized void beat(String state) {
        seq++;
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("protocol", (long) Protocol.VERSION);
        doc.put("state", state);
        doc.put("seq", seq);
        doc.put("job_id", jobId);
        doc.put("phase", phase);
        doc.put("iteration", (long) iteration);
        doc.put("updated_at", Protocol.utcNow());
        doc.put("app_version", appVersion);
        doc.put("done_jobs", new ArrayList<Object>(doneJobs));
        try {
            AtomicFiles.writeJson(new File(filesDir, Protocol.STATUS_FILE), doc);
        } catch (IOException ex) {
            // a missed beat is what a hung app looks like; the next one may succeed
        }
    }

    /** Stop the timer and write the final "done" status (no pending job left). */
    @Override
    public void close() {
        if (timer != null) {
            timer.shutdownNow();
            try {
                timer.awaitTermination(5, TimeUnit.SECONDS);
            } catch (InterruptedException ex) {
                Thread.currentThread().interrupt();
            }
        }
        synchronized (this) {
            jobId = null;
            phase = "idle";
        }
        beat("done");
    }
}
