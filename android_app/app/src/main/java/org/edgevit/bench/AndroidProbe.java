package org.edgevit.bench;

import android.content.Context;
import android.content.Intent;
import android.content.IntentFilter;
import android.os.BatteryManager;
import android.os.Build;
import android.os.Debug;
import android.os.PowerManager;
import java.io.BufferedReader;
import java.io.FileReader;
import java.util.LinkedHashMap;
import java.util.Map;
import org.edgevit.bench.core.DeviceProbe;

/** Build, PowerManager thermal status / headroom, peak memory, BatteryManager current and voltage. */
final class AndroidProbe implements DeviceProbe {
    private final Context context;
    private final BatteryManager battery;
    private final PowerManager power;

    AndroidProbe(Context context) {
        this.context = context.getApplicationContext();
        this.battery = context.getSystemService(BatteryManager.class);
        this.power = context.getSystemService(PowerManager.class);
    }

    @Override
    public Map<String, String> deviceInfo() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("model", Build.MODEL);
        m.put("manufacturer", Build.MANUFACTURER);
        m.put("os", "Android " + Build.VERSION.RELEASE + " (API " + Build.VERSION.SDK_INT + ")");
        m.put("abi", Build.SUPPORTED_ABIS.length > 0 ? Build.SUPPORTED_ABIS[0] : "");
        m.put("app_version", BuildConfig.VERSION_NAME);
        return m;
    }

    @Override
    public Map<String, Object> thermal() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("status", Build.VERSION.SDK_INT >= 29 ? (Object) (long) power.getCurrentThermalStatus() : null);
        Object headroom = null;
        if (Build.VERSION.SDK_INT >= 30) {
            float h = power.getThermalHeadroom(10);
            headroom = Float.isNaN(h) ? null : (Object) (double) h;   // NaN: not supported / called too often
        }
        m.put("headroom", headroom);
        return m;
    }

    /** Peak resident set (VmHWM of /proc/self/status); the current PSS when that is unreadable. */
    @Override
    public Double peakMemoryMb() {
        try (BufferedReader r = new BufferedReader(new FileReader("/proc/self/status"))) {
            String line;
            while ((line = r.readLine()) != null) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024.0;
                }
            }
        } catch (Exception ignored) {
            // fall through to Debug
        }
        return Debug.getPss() / 1024.0;
    }

    /** {current_now in uA, voltage in uV}; null when the gauge reports nothing. */
    @Override
    public long[] battery() {
        long current = battery.getLongProperty(BatteryManager.BATTERY_PROPERTY_CURRENT_NOW);
        Intent sticky = context.registerReceiver(null, new IntentFilter(Intent.ACTION_BATTERY_CHANGED));
        int millivolts = sticky == null ? -1 : sticky.getIntExtra(BatteryManager.EXTRA_VOLTAGE, -1);
        if (current == Long.MIN_VALUE || current == 0 || millivolts <= 0) {
            return null;
        }
        return new long[]{current, millivolts * 1000L};
    }
}
