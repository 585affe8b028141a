package org.edgevit.bench.core;

import java.io.File;

/**
 * One runtime behind one interface (LiteRT, ONNX Runtime Android, ExecuTorch in the app module; a fake in
 * the tests). A delegate that cannot be applied throws {@link DelegateException}: the job fails with that
 * reason, it never silently falls back to the CPU. Python twin: reference_app.ModelRunner.
 */
public interface ModelRunner extends AutoCloseable {
    /** Load the model with the job's runtime options (threads, delegate). */
    void load(File model, Job.Runtime runtime) throws Exception;

    /** One inference of one input. */
    Tensor run(Tensor input) throws Exception;

    /** Runtime name and version, e.g. "LiteRT 1.4.0 (GPU delegate)". */
    String runtimeVersion();

    @Override
    void close();

    /** The requested delegate failed to apply. */
    final class DelegateException extends Exception {
        public DelegateException(String message) {
            super(message);
        }
    }

    /** Picks the runner of a job (by runtime.name); throws when the app has none for it. */
    interface Factory {
        ModelRunner create(Job job) throws Exception;
    }
}
