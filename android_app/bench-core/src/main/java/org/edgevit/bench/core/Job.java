package org.edgevit.bench.core;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * A decoded jobs/&lt;job_id&gt;/job.json. The host validates jobs against the JSON Schema before pushing
 * them; here the fields the app uses are checked again (version, types, paths that stay in the job folder).
 * Python twin: protocol.Job / read_job.
 */
public final class Job {
    private static final Pattern JOB_ID = Pattern.compile("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
    private static final Pattern REL_PATH = Pattern.compile("^(?!/)(?!.*(^|/)\\.\\.(/|$))[A-Za-z0-9_.\\-/]{1,200}$");

    /** job.runtime: which runtime and delegate, how many threads. */
    public static final class Runtime {
        public final String name;
        public final String delegate;
        public final int threads;

        Runtime(String name, String delegate, int threads) {
            this.name = name;
            this.delegate = delegate;
            this.threads = threads;
        }
    }

    /** One entry of job.inputs. */
    public static final class Input {
        public final String name;
        public final String file;
        public final int[] shape;

        Input(String name, String file, int[] shape) {
            this.name = name;
            this.file = file;
            this.shape = shape;
        }
    }

    public final String jobId;
    public final File folder;
    public final String modelName;
    public final String modelFile;
    public final String modelSha256;
    public final String modelFormat;
    public final Runtime runtime;
    public final List<Input> inputs;
    public final int warmup;
    public final int iterations;
    public final double timeoutS;
    public final boolean saveOutputs;

    private Job(File folder, Map<String, Object> doc) throws ProtocolException {
        this.folder = folder;
        Object protocol = doc.get("protocol");
        if (!(protocol instanceof Long) || (Long) protocol != Protocol.VERSION) {
            throw new ProtocolException("job protocol " + protocol + ", this app speaks " + Protocol.VERSION);
        }
        jobId = str(doc, "job_id");
        if (!JOB_ID.matcher(jobId).matches() || !jobId.equals(folder.getName())) {
            throw new ProtocolException("job_id '" + jobId + "' is malformed or differs from its folder '"
                    + folder.getName() + "'");
        }
        Map<String, Object> model = obj(doc, "model");
        modelName = str(model, "name");
        modelFile = path(model, "file");
        modelSha256 = str(model, "sha256");
        modelFormat = str(model, "format");
        Map<String, Object> rt = obj(doc, "runtime");
        runtime = new Runtime(str(rt, "name"), str(rt, "delegate"), (int) integer(rt, "threads", 1, 64));
        warmup = (int) integer(doc, "warmup", 0, 100000);
        iterations = (int) integer(doc, "iterations", 1, 100000);
        Object timeout = doc.get("timeout_s");
        if (!(timeout instanceof Number) || ((Number) timeout).doubleValue() <= 0) {
            throw new ProtocolException("timeout_s must be a positive number");
        }
        timeoutS = ((Number) timeout).doubleValue();
        Object save = doc.get("save_outputs");
        if (!(save instanceof Boolean)) {
            throw new ProtocolException("save_outputs must be true or false");
        }
        saveOutputs = (Boolean) save;
        Object list = doc.get("inputs");
        if (!(list instanceof List) || ((List<?>) list).isEmpty()) {
            throw new ProtocolException("inputs must be a non-empty list");
        }
        List<Input> ins = new ArrayList<>();
        for (Object item : (List<?>) list) {
            if (!(item instanceof Map)) {
                throw new ProtocolException("inputs entries must be objects");
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) item;
            if (!"float32".equals(m.get("dtype"))) {
                throw new ProtocolException("input dtype must be float32");
            }
            ins.add(new Input(str(m, "name"), path(m, "file"), shape(m.get("shape"))));
        }
        inputs = Collections.unmodifiableList(ins);
    }

    public static Job read(File folder) throws ProtocolException, IOException {
        File file = new File(folder, Protocol.JOB_FILE);
        Map<String, Object> doc;
        try {
            doc = Json.parseObject(AtomicFiles.readText(file));
        } catch (Json.JsonException ex) {
            throw new ProtocolException(file + ": not valid JSON (" + ex.getMessage() + ")");
        }
        return new Job(folder, doc);
    }

    public File modelPath() {
        return new File(folder, modelFile);
    }

    private static String str(Map<String, Object> m, String key) throws ProtocolException {
        Object v = m.get(key);
        if (!(v instanceof String) || ((String) v).isEmpty()) {
            throw new ProtocolException(key + " must be a non-empty string");
        }
        return (String) v;
    }

    private static String path(Map<String, Object> m, String key) throws ProtocolException {
        String v = str(m, key);
        if (!REL_PATH.matcher(v).matches()) {
            throw new ProtocolException(key + " '" + v + "' must be a relative path inside the job folder");
        }
        return v;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> obj(Map<String, Object> m, String key) throws ProtocolException {
        Object v = m.get(key);
        if (!(v instanceof Map)) {
            throw new ProtocolException(key + " must be an object");
        }
        return (Map<String, Object>) v;
    }

    private static long integer(Map<String, Object> m, String key, long lo, long hi) throws ProtocolException {
        Object v = m.get(key);
        if (!(v instanceof Long) || (Long) v < lo || (Long) v > hi) {
            throw new ProtocolException(key + " must be an integer in [" + lo + ", " + hi + "]");
        }
        return (Long) v;
    }

    private static int[] shape(Object v) throws ProtocolException {
        if (!(v instanceof List) || ((List<?>) v).isEmpty()) {
            throw new ProtocolException("shape must be a non-empty list");
        }
        List<?> l = (List<?>) v;
        int[] out = new int[l.size()];
        for (int i = 0; i < out.length; i++) {
            if (!(l.get(i) instanceof Long) || (Long) l.get(i) < 1) {
                throw new ProtocolException("shape entries must be positive integers");
            }
            out[i] = (int) (long) (Long) l.get(i);
        }
        return out;
    }
}
