package org.edgevit.bench;

import java.io.File;
import org.edgevit.bench.core.Job;
import org.edgevit.bench.core.ModelRunner;
import org.edgevit.bench.core.Tensor;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;

/**
 * ExecuTorch (org.pytorch:executorch-android): runs a {@code .pte} program's "forward" method. Python twin:
 * reference_app.HostModelRunner with the target table's host runtime (ExecuTorch's Python runtime).
 *
 * <p>Delegates: an ExecuTorch program carries its delegation from export ({@code edgevit-export -t executorch
 * --et-backend xnnpack|portable|coreml}); the runtime only executes it. "cpu" and "xnnpack" run the program as
 * exported (the AAR links XNNPACK and the portable/optimized kernels). "gpu" and "nnapi" are failed results:
 * this app does not ask for another backend at run time (a Vulkan- or QNN-delegated program needs its own
 * export and an AAR built with that backend).
 *
 * <p>Threads: the Java binding has no per-Module threadpool. {@code Module.load(path, loadMode, numThreads)}
 * resets ExecuTorch's process-wide threadpool (the one the XNNPACK delegate runs on) to {@code numThreads}
 * (0 would mean the binding's own default, half the cores). The app runs one job at a time, so the job's
 * threads hold for the whole job; they are reported as requested.
 */
final class ExecuTorchRunner implements ModelRunner {
    private Module module;
    private String label = "";

    @Override
    public void load(File model, Job.Runtime runtime) throws Exception {
        switch (runtime.delegate) {
            case "cpu":
            case "xnnpack":
                label = "program as exported, " + runtime.threads + " threads";
                break;
            default:
                throw new DelegateException("ExecuTorch takes its delegate from the exported program (--et-backend);"
                        + " this app cannot apply '" + runtime.delegate + "' at run time");
        }
        module = Module.load(model.getAbsolutePath(), Module.LOAD_MODE_FILE, runtime.threads);
        module.loadMethod("forward");   // loading (and delegate init) is part of load_ms, not of the first run
    }

    @Override
    public Tensor run(Tensor x) throws Exception {
        long[] shape = new long[x.shape.length];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = x.shape[i];
        }
        EValue[] outputs = module.forward(EValue.from(org.pytorch.executorch.Tensor.fromBlob(x.data, shape)));
        if (outputs.length == 0 || !outputs[0].isTensor()) {
            throw new IllegalStateException("the program's forward returned no tensor");
        }
        org.pytorch.executorch.Tensor out = outputs[0].toTensor();
        long[] outShape = out.shape();
        int[] dims = new int[outShape.length];
        for (int i = 0; i < dims.length; i++) {
            dims[i] = (int) outShape[i];
        }
        return new Tensor(out.getDataAsFloatArray(), dims);
    }

    @Override
    public String runtimeVersion() {
        return "ExecuTorch " + BuildConfig.EXECUTORCH_VERSION + " (" + label + ")";
    }

    @Override
    public void close() {
        if (module != null) {
            module.destroy();
            module = null;
        }
    }
}
