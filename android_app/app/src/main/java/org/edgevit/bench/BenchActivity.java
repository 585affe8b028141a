package org.edgevit.bench;

import android.app.Activity;
import android.content.Intent;
import android.os.Bundle;
import android.widget.TextView;

/**
 * Started by the host with {@code am start -n org.edgevit.bench/.BenchActivity}: hands the pending jobs of the
 * external files dir to {@link BenchService} (a foreground service, so the run keeps a foreground app's
 * scheduling and OOM priority) and shows where it stands. Android glue only; the logic is bench-core.
 */
public final class BenchActivity extends Activity {
    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        TextView view = new TextView(this);
        view.setText("EdgeViT Bench: running the jobs in " + getExternalFilesDir(null));
        setContentView(view);
        startJobs();
    }

    @Override
    protected void onNewIntent(Intent intent) {
        super.onNewIntent(intent);
        startJobs();   // am start while running: the service rescans for new jobs when the current batch ends
    }

    private void startJobs() {
        startForegroundService(new Intent(this, BenchService.class));
    }
}
