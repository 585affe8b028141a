package org.edgevit.bench;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtSession;
import java.io.File;
import java.nio.FloatBuffer;
import java.util.Collections;
import org.edgevit.bench.core.Job;
import org.edgevit.bench.core.ModelRunner;
import org.edgevit.bench.core.Tensor;

/**
 * ONNX Runtime Android: "cpu" = the default CPU EP with N intra-op threads, "xnnpack" = the XNNPACK EP,
 * "nnapi" = the NNAPI EP (ORT places the nodes NNAPI cannot take on the CPU: the parity column shows whether
 * the outputs changed). There is no GPU EP in ORT Android: "gpu" is a failed result.
 */
final class OrtRunner implements ModelRunner {
    private OrtEnvironment env;
    private OrtSession session;
    private String inputName;
    private String label = "";

    @Override
    public void load(File model, Job.Runtime runtime) throws Exception {
        env = OrtEnvironment.getEnvironment();
        OrtSession.SessionOptions options = new OrtSession.SessionOptions();
        switch (runtime.delegate) {
            case "cpu":
                options.setIntraOpNumThreads(runtime.threads);
                label = "CPU EP";
                break;
            case "xnnpack":
                options.setIntraOpNumThreads(1);   // XNNPACK brings its own thread pool
                options.addXnnpack(Collections.singletonMap("intra_op_num_threads", String.valueOf(runtime.threads)));
                label = "XNNPACK EP";
                break;
            case "nnapi":
                options.setIntraOpNumThreads(runtime.threads);
                try {
                    options.addNnapi();
                } catch (Exception ex) {
                    throw new DelegateException("the NNAPI EP failed to apply: " + ex.getMessage());
                }
                label = "NNAPI EP";
                break;
            default:
                throw new DelegateException("ONNX Runtime Android has no '" + runtime.delegate + "' execution provider");
        }
        session = env.createSession(model.getAbsolutePath(), options);
        inputName = session.getInputNames().iterator().next();
    }

    @Override
    public Tensor run(Tensor x) throws Exception {
        long[] shape = new long[x.shape.length];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = x.shape[i];
        }
        try (OnnxTensor in = OnnxTensor.createTensor(env, FloatBuffer.wrap(x.data), shape);
             OrtSession.Result result = session.run(Collections.singletonMap(inputName, in))) {
            OnnxTensor out = (OnnxTensor) result.get(0);
            long[] outShape = out.getInfo().getShape();
            int[] dims = new int[outShape.length];
            for (int i = 0; i < dims.length; i++) {
                dims[i] = (int) outShape[i];
            }
            FloatBuffer fb = out.getFloatBuffer();
            float[] data = new float[fb.remaining()];
            fb.get(data);
            return new Tensor(data, dims);
        }
    }

    @Override
    public String runtimeVersion() {
        return "ONNX Runtime " + env.getVersion() + " (" + label + ")";
    }

    @Override
    public void close() {
        if (session != null) {
            try {
                session.close();
            } catch (Exception ignored) {
                // the result is already written
            }
        }
    }
}
