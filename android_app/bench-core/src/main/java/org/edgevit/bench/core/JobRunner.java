package org.edgevit.bench.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs the pending jobs of a files dir: every jobs/&lt;id&gt;/ without results/&lt;id&gt;.json, in name order
 * (resume = run what has no result). Per job: check the model's sha256, load, time, save the outputs of
 * the fixed inputs, then write the result atomically. Every failure is a failed result with its reason.
 * Python twin: reference_app.run_pending / run_job.
 */
public final class JobRunner {
    private final File filesDir;
    private final ModelRunner.Factory factory;
    private final DeviceProbe probe;
    private final Heartbeat heartbeat;
    private final String appVersion;

    public JobRunner(File filesDir, ModelRunner.Factory factory, DeviceProbe probe, Heartbeat heartbeat,
                     String appVersion) {
        this.filesDir = filesDir;
        this.factory = factory;
        this.probe = probe;
        this.heartbeat = heartbeat;
        this.appVersion = appVersion;
    }

    /** Job ids with a job.json and no result, sorted: the resume rule. */
    public static List<String> pendingJobs(File filesDir) {
        File[] dirs = new File(filesDir, Protocol.JOBS_DIR).listFiles(File::isDirectory);
        List<String> out = new ArrayList<>();
        if (dirs == null) {
            return out;
        }
        Arrays.sort(dirs);
        for (File d : dirs) {
            if (new File(d, Protocol.JOB_FILE).isFile() && !resultFile(filesDir, d.getName()).exists()) {
                out.add(d.getName());
            }
        }
        return out;
    }

    public static File resultFile(File filesDir, String jobId) {
        return new File(new File(filesDir, Protocol.RESULTS_DIR), jobId + ".json");
    }

    /** Every pending job, rescanning until none is left (jobs pushed meanwhile run too); the results written. */
    public List<Map<String, Object>> runPending() throws IOException {
        List<Map<String, Object>> results = new ArrayList<>();
        List<String> pending = pendingJobs(filesDir);
        while (!pending.isEmpty()) {
            for (String id : pending) {
                results.add(runJob(id));   // every job ends with a result file, so the loop ends
            }
            pending = pendingJobs(filesDir);
        }
        return results;
    }

    public Map<String, Object> runJob(String jobId) throws IOException {
        heartbeat.update(jobId, "load", 0);
        String started = Protocol.utcNow();
        Map<String, Object> thermalBefore = probe.thermal();
        Map<String, Object> runtime = new LinkedHashMap<>();
        runtime.put("name", "");
        runtime.put("version", "");
        runtime.put("delegate", "");
        runtime.put("threads", 1L);
        Double loadMs = null;
        Double firstMs = null;
        long warmup = 0;
        List<Object> latencies = new ArrayList<>();
        List<List<Object>> power = new ArrayList<>();
        List<Object> outputs = new ArrayList<>();
        String status = "ok";
        String error = null;
        ModelRunner runner = null;
        try {
            Job job = Job.read(new File(new File(filesDir, Protocol.JOBS_DIR), jobId));
            runtime.put("name", job.runtime.name);
            runtime.put("delegate", job.runtime.delegate);
            runtime.put("threads", (long) job.runtime.threads);
            warmup = job.warmup;
            long deadline = System.nanoTime() + (long) (job.timeoutS * 1e9);
            if (!sha256(job.modelPath()).equals(job.modelSha256)) {
                throw new ProtocolException("model file " + job.modelFile + " does not match its sha256 (incomplete push?)");
            }
            List<Tensor> inputs = new ArrayList<>();
            for (Job.Input in : job.inputs) {
                Tensor t = Npy.read(new File(job.folder, in.file));
                if (!Arrays.equals(t.shape, in.shape)) {
                    throw new ProtocolException(in.file + ": shape " + Arrays.toString(t.shape) + " differs from the declared "
                            + Arrays.toString(in.shape));
                }
                inputs.add(t);
            }
            runner = factory.create(job);
            long t0 = System.nanoTime();
            runner.load(job.modelPath(), job.runtime);
            loadMs = (System.nanoTime() - t0) / 1e6;
            runtime.put("version", runner.runtimeVersion());
            TimingLoop timing;
            try (PowerSampler sampler = new PowerSampler(probe, 50).start()) {
                timing = TimingLoop.run(runner, inputs.get(0), job.warmup, job.iterations, deadline, heartbeat);
                power = sampler.samples();
            }
            firstMs = timing.firstMs;
            latencies.addAll(timing.latenciesMs);
            if (job.saveOutputs) {
                heartbeat.update(null, "outputs", 0);
                for (int i = 0; i < inputs.size(); i++) {
                    Tensor y = runner.run(inputs.get(i));
                    String rel = Protocol.RESULTS_DIR + "/" + jobId + "/out" + i + ".npy";
                    Npy.write(new File(filesDir, rel), y);
                    Map<String, Object> o = new LinkedHashMap<>();
                    o.put("input", (long) i);
                    o.put("name", "output");
                    o.put("file", rel);
                    o.put("dtype", "float32");
                    List<Object> shape = new ArrayList<>();
                    for (int d : y.shape) {
                        shape.add((long) d);
                    }
                    o.put("shape", shape);
                    outputs.add(o);
                }
            }
        } catch (Exception ex) {
            status = "failed";
            String msg = ex.getMessage();
            error = ex.getClass().getSimpleName() + ": " + (msg == null || msg.isEmpty() ? "(no message)" : msg);
            latencies.clear();
            outputs.clear();
        } finally {
            if (runner != null) {
                runner.close();
            }
        }
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("protocol", (long) Protocol.VERSION);
        result.put("job_id", jobId);
        result.put("status", status);
        result.put("error", error);
        Map<String, String> device = new LinkedHashMap<>(probe.deviceInfo());
        device.put("app_version", appVersion);
        result.put("device", device);
        result.put("runtime", runtime);
        result.put("load_ms", loadMs);
        result.put("first_ms", firstMs);
        result.put("warmup", warmup);
        result.put("latencies_ms", latencies);
        result.put("peak_memory_mb", probe.peakMemoryMb());
        result.put("thermal_before", thermalBefore);
        result.put("thermal_after", probe.thermal());
        result.put("power_samples", power);
        result.put("outputs", outputs);
        result.put("started_at", started);
        result.put("finished_at", Protocol.utcNow());
        AtomicFiles.writeJson(resultFile(filesDir, jobId), result);
        heartbeat.jobDone(jobId);
        return result;
    }

    static String sha256(File file) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException ex) {
            throw new IOException(ex);
        }
        try (InputStream in = new FileInputStream(file)) {
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) {
                md.update(buf, 0, n);
            }
        }
        StringBuilder sb = new StringBuilder();
        for (byte b : md.digest()) {
            sb.append(String.format("%02x", b));
        }
        return sb.toString();
    }
}
