package org.edgevit.bench.core;

import java.util.Arrays;
import java.util.List;

/**
 * Latency statistics, the same definitions as the host's device_bench/stats.py: linear-interpolation
 * percentiles (numpy's default), population std, 10 % trimmed mean.
 */
public final class Stats {
    public final int count;
    public final double mean;
    public final double median;
    public final double p90;
    public final double p99;
    public final double std;
    public final double min;
    public final double max;
    public final double trimmedMean;

    private Stats(double[] sorted) {
        count = sorted.length;
        mean = mean(sorted);
        median = percentile(sorted, 50.0);
        p90 = percentile(sorted, 90.0);
        p99 = percentile(sorted, 99.0);
        double acc = 0;
        for (double v : sorted) {
            acc += (v - mean) * (v - mean);
        }
        std = Math.sqrt(acc / count);
        min = sorted[0];
        max = sorted[count - 1];
        trimmedMean = trimmedMean(sorted, 0.1);
    }

    public static Stats of(List<Double> values) {
        if (values.isEmpty()) {
            throw new IllegalArgumentException("no latencies to summarise");
        }
        double[] sorted = new double[values.size()];
        for (int i = 0; i < sorted.length; i++) {
            double v = values.get(i);
            if (Double.isNaN(v) || Double.isInfinite(v) || v < 0) {
                throw new IllegalArgumentException("latencies must be finite and non-negative, got " + v);
            }
            sorted[i] = v;
        }
        Arrays.sort(sorted);
        return new Stats(sorted);
    }

    static double percentile(double[] sorted, double q) {
        double pos = (sorted.length - 1) * q / 100.0;
        int lo = (int) Math.floor(pos);
        int hi = Math.min(lo + 1, sorted.length - 1);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }

    static double trimmedMean(double[] sorted, double trim) {
        int k = (int) (sorted.length * trim);
        double[] kept = (sorted.length - 2 * k) > 0 ? Arrays.copyOfRange(sorted, k, sorted.length - k) : sorted;
        return mean(kept);
    }

    private static double mean(double[] sorted) {
        double sum = 0;
        for (double v : sorted) {
            sum += v;
        }
        double m = sum / sorted.length;
        return Math.min(Math.max(m, sorted[0]), sorted[sorted.length - 1]);
    }
}
