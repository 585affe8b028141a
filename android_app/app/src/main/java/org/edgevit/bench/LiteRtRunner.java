package org.edgevit.bench;

import java.io.File;
import java.io.FileInputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import org.edgevit.bench.core.Job;
import org.edgevit.bench.core.ModelRunner;
import org.edgevit.bench.core.Tensor;
import org.tensorflow.lite.Delegate;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.TensorFlowLite;
import org.tensorflow.lite.gpu.CompatibilityList;
import org.tensorflow.lite.gpu.GpuDelegate;
import org.tensorflow.lite.nnapi.NnApiDelegate;

/**
 * LiteRT's Interpreter: "cpu"/"xnnpack" = XNNPACK with N threads, "gpu" = the GPU delegate, "nnapi" = the NNAPI
 * delegate. A delegate the device cannot apply is a DelegateException (a failed result), never a CPU fallback.
 */
final class LiteRtRunner implements ModelRunner {
    private Interpreter interpreter;
    private Delegate delegate;
    private String label = "";

    @Override
    public void load(File model, Job.Runtime runtime) throws Exception {
        MappedByteBuffer buffer;
        try (FileInputStream in = new FileInputStream(model); FileChannel ch = in.getChannel()) {
            buffer = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size());
        }
        Interpreter.Options options = new Interpreter.Options().setNumThreads(runtime.threads);
        switch (runtime.delegate) {
            case "cpu":
            case "xnnpack":
                options.setUseXNNPACK(true);
                label = "XNNPACK";
                break;
            case "gpu":
                CompatibilityList compat = new CompatibilityList();
                if (!compat.isDelegateSupportedOnThisDevice()) {
                    throw new DelegateException("the LiteRT GPU delegate is not supported on this device");
                }
                delegate = new GpuDelegate(compat.getBestOptionsForThisDevice());
                options.addDelegate(delegate);
                label = "GPU delegate";
                break;
            case "nnapi":
                delegate = new NnApiDelegate();
                options.addDelegate(delegate);
                label = "NNAPI delegate";
                break;
            default:
                throw new DelegateException("LiteRT has no delegate '" + runtime.delegate + "'");
        }
        try {
            interpreter = new Interpreter(buffer, options);
        } catch (RuntimeException ex) {
            if (delegate != null) {
                throw new DelegateException(label + " failed to apply: " + ex.getMessage());
            }
            throw ex;
        }
    }

    @Override
    public Tensor run(Tensor x) {
        ByteBuffer in = ByteBuffer.allocateDirect(x.data.length * 4).order(ByteOrder.nativeOrder());
        in.asFloatBuffer().put(x.data);
        int[] shape = interpreter.getOutputTensor(0).shape();
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        ByteBuffer out = ByteBuffer.allocateDirect(n * 4).order(ByteOrder.nativeOrder());
        interpreter.run(in, out);
        out.rewind();
        FloatBuffer fb = out.asFloatBuffer();
        float[] data = new float[n];
        fb.get(data);
        return new Tensor(data, shape);
    }

    @Override
    public String runtimeVersion() {
        return "LiteRT " + TensorFlowLite.runtimeVersion() + " (" + label + ")";
    }

    @Override
    public void close() {
        if (interpreter != null) {
            interpreter.close();
        }
        if (delegate instanceof AutoCloseable) {
            try {
                ((AutoCloseable) delegate).close();
            } catch (Exception ignored) {
                // closing a delegate cannot change a result already written
            }
        }
    }
}
