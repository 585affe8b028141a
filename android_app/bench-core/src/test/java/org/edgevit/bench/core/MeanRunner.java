package org.edgevit.bench.core;

import java.io.File;

/** A test ModelRunner: the per-channel mean of an NCHW input, shape [N, C]. Real work with a known answer. */
public final class MeanRunner implements ModelRunner {
    boolean loaded;
    boolean closed;

    @Override
    public void load(File model, Job.Runtime runtime) throws Exception {
        if (!"cpu".equals(runtime.delegate) && !"xnnpack".equals(runtime.delegate)) {
            throw new DelegateException("delegate '" + runtime.delegate + "' cannot be applied by the test runner");
        }
        loaded = model.isFile();
    }

    @Override
    public Tensor run(Tensor x) {
        int n = x.shape[0];
        int c = x.shape[1];
        int hw = x.size() / (n * c);
        float[] out = new float[n * c];
        for (int i = 0; i < n * c; i++) {
            double acc = 0;
            for (int k = 0; k < hw; k++) {
                acc += x.data[i * hw + k];
            }
            out[i] = (float) (acc / hw);
        }
        return new Tensor(out, new int[]{n, c});
    }

    @Override
    public String runtimeVersion() {
        return "mean-runner 1";
    }

    @Override
    public void close() {
        closed = true;
    }
}
