package org.edgevit.bench;

import android.app.Notification;
import android.app.NotificationChannel;
import android.app.NotificationManager;
import android.app.Service;
import android.content.Intent;
import android.content.pm.ServiceInfo;
import android.os.Build;
import android.os.IBinder;
import android.os.PowerManager;
import android.util.Log;
import java.io.File;
import org.edgevit.bench.core.Heartbeat;
import org.edgevit.bench.core.JobRunner;

/** Runs every pending job (bench-core's JobRunner) on a worker thread under a foreground notification. */
public final class BenchService extends Service {
    private static final String TAG = "EdgeVitBench";
    private static final String CHANNEL = "bench";
    private volatile boolean rescan;
    private Thread worker;

    @Override
    public int onStartCommand(Intent intent, int flags, int startId) {
        NotificationManager nm = getSystemService(NotificationManager.class);
        nm.createNotificationChannel(new NotificationChannel(CHANNEL, "Benchmark jobs", NotificationManager.IMPORTANCE_LOW));
        Notification notification = new Notification.Builder(this, CHANNEL)
                .setContentTitle("EdgeViT Bench")
                .setContentText("Running benchmark jobs")
                .setSmallIcon(android.R.drawable.stat_sys_download)
                .setOngoing(true)
                .build();
        if (Build.VERSION.SDK_INT >= 34) {
            startForeground(1, notification, ServiceInfo.FOREGROUND_SERVICE_TYPE_SPECIAL_USE);
        } else {
            startForeground(1, notification);
        }
        synchronized (this) {
            rescan = true;
            if (worker == null || !worker.isAlive()) {
                worker = new Thread(this::runAll, "bench-jobs");
                worker.start();
            }
        }
        return START_NOT_STICKY;
    }

    private void runAll() {
        File files = getExternalFilesDir(null);
        PowerManager.WakeLock lock = getSystemService(PowerManager.class)
                .newWakeLock(PowerManager.PARTIAL_WAKE_LOCK, "edgevit:bench");
        lock.acquire(6 * 60 * 60 * 1000L);
        try (Heartbeat beat = new Heartbeat(files, BuildConfig.VERSION_NAME, 1000).start()) {
            JobRunner runner = new JobRunner(files, new Runners(), new AndroidProbe(this), beat, BuildConfig.VERSION_NAME);
            while (true) {
                synchronized (this) {
                    rescan = false;
                }
                runner.runPending();
                synchronized (this) {
                    if (!rescan && JobRunner.pendingJobs(files).isEmpty()) {
                        worker = null;
                        break;
                    }
                }
            }
        } catch (Exception ex) {
            Log.e(TAG, "job runner failed", ex);
        } finally {
            lock.release();
            stopForeground(STOP_FOREGROUND_REMOVE);
            stopSelf();
        }
    }

    @Override
    public IBinder onBind(Intent intent) {
        return null;
    }
}
