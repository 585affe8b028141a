package org.edgevit.bench.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Battery current and voltage read from the probe every interval while the timed loop runs; the host
 * turns the samples into energy per inference. Python twin: reference_app.PowerSampler.
 */
public final class PowerSampler implements AutoCloseable {
    private final DeviceProbe probe;
    private final long intervalMs;
    private final List<List<Object>> samples = new ArrayList<>();
    private Thread thread;
    private volatile boolean stop;
    private long t0;

    public PowerSampler(DeviceProbe probe, long intervalMs) {
        this.probe = probe;
        this.intervalMs = intervalMs;
    }

    public PowerSampler start() {
        if (probe.battery() == null) {
            return this;   // no gauge: no samples, the host reports energy as unavailable
        }
        t0 = System.nanoTime();
        thread = new Thread(() -> {
            while (!stop) {
                long[] b = probe.battery();
                if (b != null) {
                    double t = Math.round((System.nanoTime() - t0) / 1e3) / 1e3;
                    synchronized (samples) {
                        samples.add(Arrays.<Object>asList(t, (double) b[0], (double) b[1]));
                    }
                }
                try {
                    Thread.sleep(intervalMs);
                } catch (InterruptedException ex) {
                    return;
                }
            }
        }, "power");
        thread.setDaemon(true);
        thread.start();
        return this;
    }

    public List<List<Object>> samples() {
        synchronized (samples) {
            return new ArrayList<>(samples);
        }
    }

    @Override
    public void close() {
        stop = true;
        if (thread != null) {
            thread.interrupt();
            try {
                thread.join(2000);
            } catch (InterruptedException ex) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
