package org.edgevit.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class JobRunnerTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    private File writeJob(File files, String id, String delegate, int iterations) throws IOException {
        return writeJob(files, id, "litert", "tflite", "model.tflite", delegate, iterations);
    }

    private File writeJob(File files, String id, String runtime, String format, String modelFile, String delegate,
                          int iterations) throws IOException {
        File dir = new File(new File(files, "jobs"), id);
        assertTrue(new File(dir, "inputs").mkdirs());
        byte[] model = ("model of " + id).getBytes(StandardCharsets.UTF_8);
        Files.write(new File(dir, modelFile).toPath(), model);
        float[] x = new float[2 * 2 * 2];
        for (int i = 0; i < x.length; i++) {
            x[i] = i;
        }
        Npy.write(new File(dir, "inputs/x0.npy"), new Tensor(x, new int[]{1, 2, 2, 2}));
        String sha = JobRunner.sha256(new File(dir, modelFile));
        String job = "{\"protocol\": 1, \"job_id\": \"" + id + "\", \"created_at\": \"now\", \"model\": {\"name\": \"m\", "
                + "\"file\": \"" + modelFile + "\", \"sha256\": \"" + sha + "\", \"format\": \"" + format + "\", "
                + "\"precision\": \"fp32\", \"input_shape\": [1, 2, 2, 2]}, \"runtime\": {\"name\": \"" + runtime + "\", "
                + "\"delegate\": \"" + delegate + "\", "
                + "\"threads\": 2}, \"warmup\": 1, \"iterations\": " + iterations + ", \"timeout_s\": 60, "
                + "\"inputs\": [{\"name\": \"input\", \"file\": \"inputs/x0.npy\", \"dtype\": \"float32\", "
                + "\"shape\": [1, 2, 2, 2]}], \"save_outputs\": true}";
        Files.write(new File(dir, "job.json").toPath(), job.getBytes(StandardCharsets.UTF_8));
        return dir;
    }

    @Test
    public void runsPendingJobsOnceAndWritesOutputsAndResults() throws Exception {
        File files = tmp.newFolder("files");
        writeJob(files, "a", "cpu", 5);
        writeJob(files, "b", "gpu", 5);
        List<Map<String, Object>> results;
        try (Heartbeat beat = new Heartbeat(files, "0.1.0", 50).start()) {
            results = new JobRunner(files, job -> new MeanRunner(), DeviceProbe.NONE, beat, "0.1.0").runPending();
        }
        assertEquals(2, results.size());
        Map<String, Object> a = results.get(0);
        assertEquals("ok", a.get("status"));
        assertEquals(5, ((List<?>) a.get("latencies_ms")).size());
        Tensor out = Npy.read(new File(files, "results/a/out0.npy"));
        assertTrue(Arrays.equals(new int[]{1, 2}, out.shape));
        assertEquals(1.5f, out.data[0], 0f);   // mean of 0..3
        assertEquals(5.5f, out.data[1], 0f);   // mean of 4..7
        Map<String, Object> b = results.get(1);
        assertEquals("failed", b.get("status"));
        assertTrue((String) b.get("error"), ((String) b.get("error")).contains("delegate 'gpu' cannot be applied"));
        assertEquals(Arrays.asList(), JobRunner.pendingJobs(files));
        Map<String, Object> status = Json.parseObject(AtomicFiles.readText(new File(files, "status.json")));
        assertEquals("done", status.get("state"));
        assertEquals(Arrays.asList("a", "b"), status.get("done_jobs"));
        // parsed back from disk, the result equals what was returned
        assertEquals(Json.parse(Json.write(a)), Json.parse(AtomicFiles.readText(JobRunner.resultFile(files, "a"))));
    }

    @Test
    public void tamperedModelAndForeignPathsFailWithReasons() throws Exception {
        File files = tmp.newFolder("files");
        File dir = writeJob(files, "c", "cpu", 3);
        Files.write(new File(dir, "model.tflite").toPath(), "truncated".getBytes(StandardCharsets.UTF_8));
        File evil = writeJob(files, "d", "cpu", 3);
        String text = new String(Files.readAllBytes(new File(evil, "job.json").toPath()), StandardCharsets.UTF_8);
        Files.write(new File(evil, "job.json").toPath(),
                text.replace("\"inputs/x0.npy\"", "\"../c/inputs/x0.npy\"").getBytes(StandardCharsets.UTF_8));
        List<Map<String, Object>> results;
        try (Heartbeat beat = new Heartbeat(files, "0.1.0", 50).start()) {
            results = new JobRunner(files, job -> new MeanRunner(), DeviceProbe.NONE, beat, "0.1.0").runPending();
        }
        assertTrue((String) results.get(0).get("error"), ((String) results.get(0).get("error")).contains("sha256"));
        assertTrue((String) results.get(1).get("error"), ((String) results.get(1).get("error")).contains("relative path"));
    }

    @Test
    public void otherProtocolVersionsAndUnknownRuntimesAreFailedResults() throws Exception {
        File files = tmp.newFolder("files");
        File v2 = writeJob(files, "v2", "cpu", 3);
        String text = new String(Files.readAllBytes(new File(v2, "job.json").toPath()), StandardCharsets.UTF_8);
        Files.write(new File(v2, "job.json").toPath(),
                text.replace("\"protocol\": 1", "\"protocol\": 2").getBytes(StandardCharsets.UTF_8));
        writeJob(files, "x", "cpu", 3);
        List<Map<String, Object>> results;
        try (Heartbeat beat = new Heartbeat(files, "0.1.0", 50).start()) {
            results = new JobRunner(files, job -> {
                throw new UnsupportedOperationException("this app build has no runner for runtime 'executorch'");
            }, DeviceProbe.NONE, beat, "0.1.0").runPending();
        }
        assertTrue((String) results.get(0).get("error"), ((String) results.get(0).get("error")).contains("protocol 2"));
        assertTrue((String) results.get(1).get("error"), ((String) results.get(1).get("error")).contains("executorch"));
        assertEquals("failed", results.get(1).get("status"));
    }

    @Test
    public void executorchJobsGoToTheRunnerOfRuntimeExecutorch() throws Exception {
        File files = tmp.newFolder("files");
        writeJob(files, "et", "executorch", "pte", "model.pte", "xnnpack", 3);
        writeJob(files, "lite", "litert", "tflite", "model.tflite", "cpu", 3);
        final List<String> loaded = new java.util.ArrayList<>();
        ModelRunner.Factory byRuntime = job -> {   // what the app's Runners does: job.runtime.name -> runner
            if (!"executorch".equals(job.runtime.name)) {
                throw new UnsupportedOperationException("this build has no runner for runtime '" + job.runtime.name + "'");
            }
            final MeanRunner mean = new MeanRunner();
            return new ModelRunner() {
                @Override
                public void load(File model, Job.Runtime runtime) throws Exception {
                    loaded.add(model.getName() + " t" + runtime.threads);
                    mean.load(model, runtime);
                }

                @Override
                public Tensor run(Tensor input) {
                    return mean.run(input);
                }

                @Override
                public String runtimeVersion() {
                    return "ExecuTorch (test)";
                }

                @Override
                public void close() {
                    mean.close();
                }
            };
        };
        List<Map<String, Object>> results;
        try (Heartbeat beat = new Heartbeat(files, "0.1.0", 50).start()) {
            results = new JobRunner(files, byRuntime, DeviceProbe.NONE, beat, "0.1.0").runPending();
        }
        Map<String, Object> et = results.get(0);
        assertEquals(et.get("error") + "", "ok", et.get("status"));
        assertEquals("executorch", ((Map<?, ?>) et.get("runtime")).get("name"));
        assertEquals(3, ((List<?>) et.get("latencies_ms")).size());
        assertEquals(Arrays.asList("model.pte t2"), loaded);
        assertEquals(1.5f, Npy.read(new File(files, "results/et/out0.npy")).data[0], 0f);
        assertEquals("failed", results.get(1).get("status"));
        assertTrue((String) results.get(1).get("error"), ((String) results.get(1).get("error")).contains("'litert'"));
    }

    @Test
    public void heartbeatSeqGrowsWhileAJobRuns() throws Exception {
        File files = tmp.newFolder("files");
        try (Heartbeat beat = new Heartbeat(files, "0.1.0", 20).start()) {
            long first = beat.seq();
            Thread.sleep(200);
            assertTrue(beat.seq() > first + 3);
            Map<String, Object> status = Json.parseObject(AtomicFiles.readText(new File(files, "status.json")));
            assertEquals("running", status.get("state"));
        }
    }
}
