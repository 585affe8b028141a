package org.edgevit.bench;

import org.edgevit.bench.core.Job;
import org.edgevit.bench.core.ModelRunner;

/** job.runtime.name -> the ModelRunner of this build (the protocol's runtime names). */
public final class Runners implements ModelRunner.Factory {
    @Override
    public ModelRunner create(Job job) throws Exception {
        switch (job.runtime.name) {
            case "litert":
                return new LiteRtRunner();
            case "onnxruntime":
                return new OrtRunner();
            case "executorch":
                return new ExecuTorchRunner();
            default:
                throw new UnsupportedOperationException("this app build has no runner for runtime '" + job.runtime.name + "'");
        }
    }
}
