package org.edgevit.bench.core;

import java.util.Arrays;

/** A float32 tensor in C order: what inputs and outputs are in the protocol (npy files). */
public final class Tensor {
    public final float[] data;
    public final int[] shape;

    public Tensor(float[] data, int[] shape) {
        long n = 1;
        for (int d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            }
            n *= d;
        }
        if (n != data.length) {
            throw new IllegalArgumentException(data.length + " values for shape " + Arrays.toString(shape));
        }
        this.data = data;
        this.shape = shape.clone();
    }

    public int size() {
        return data.length;
    }
}
