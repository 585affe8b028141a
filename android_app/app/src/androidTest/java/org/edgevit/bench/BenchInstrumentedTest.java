package org.edgevit.bench;

import static org.junit.Assert.assertTrue;

import android.content.Context;
import androidx.test.ext.junit.runners.AndroidJUnit4;
import androidx.test.platform.app.InstrumentationRegistry;
import java.io.File;
import org.edgevit.bench.core.Heartbeat;
import org.edgevit.bench.core.JobRunner;
import org.junit.Test;
import org.junit.runner.RunWith;

/**
 * The same jobs as the Activity, run by {@code am instrument -w org.edgevit.bench.test/androidx.test.runner.AndroidJUnitRunner}
 * (what AWS Device Farm and Firebase Test Lab drive). A job that fails is a failed RESULT, not a failed test;
 * the test fails only when a job is left without a result.
 */
@RunWith(AndroidJUnit4.class)
public class BenchInstrumentedTest {
    @Test
    public void runPendingJobs() throws Exception {
        Context context = InstrumentationRegistry.getInstrumentation().getTargetContext();
        File files = context.getExternalFilesDir(null);
        try (Heartbeat beat = new Heartbeat(files, BuildConfig.VERSION_NAME, 1000).start()) {
            new JobRunner(files, new Runners(), new AndroidProbe(context), beat, BuildConfig.VERSION_NAME).runPending();
        }
        assertTrue("jobs left without a result: " + JobRunner.pendingJobs(files), JobRunner.pendingJobs(files).isEmpty());
    }
}
