package org.edgevit.bench.core;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeoutException;

/**
 * The first inference (timed apart), warm-up runs, then the timed iterations, each timed with
 * System.nanoTime. Python twin: reference_app.timing_loop.
 */
public final class TimingLoop {
    public final double firstMs;
    public final List<Double> latenciesMs;

    private TimingLoop(double firstMs, List<Double> latenciesMs) {
        this.firstMs = firstMs;
        this.latenciesMs = latenciesMs;
    }

    public static TimingLoop run(ModelRunner runner, Tensor x, int warmup, int iterations, long deadlineNanos,
                                 Heartbeat heartbeat) throws Exception {
        long t0 = System.nanoTime();
        runner.run(x);
        double first = (System.nanoTime() - t0) / 1e6;
        heartbeat.update(null, "warmup", 0);
        for (int i = 0; i < warmup; i++) {
            heartbeat.update(null, null, i);
            runner.run(x);
            if (System.nanoTime() - deadlineNanos > 0) {
                throw new TimeoutException("job timed out during warm-up (" + (i + 1) + " of " + warmup + " runs)");
            }
        }
        heartbeat.update(null, "timing", 0);
        List<Double> latencies = new ArrayList<>(iterations);
        for (int i = 0; i < iterations; i++) {
            heartbeat.update(null, null, i);
            long s = System.nanoTime();
            runner.run(x);
            latencies.add((System.nanoTime() - s) / 1e6);
            if (System.nanoTime() - deadlineNanos > 0) {
                throw new TimeoutException("job timed out after " + (i + 1) + " of " + iterations + " timed runs");
            }
        }
        return new TimingLoop(first, latencies);
    }
}
