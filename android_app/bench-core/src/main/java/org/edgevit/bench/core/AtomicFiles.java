package org.edgevit.bench.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;

/** Every file a reader may see is written to a temp name in the same folder, synced, then renamed. */
public final class AtomicFiles {
    private AtomicFiles() {
    }

    public static void write(File target, byte[] data) throws IOException {
        File dir = target.getAbsoluteFile().getParentFile();
        if (!dir.isDirectory() && !dir.mkdirs() && !dir.isDirectory()) {
            throw new IOException("cannot create " + dir);
        }
        File tmp = File.createTempFile("." + target.getName() + ".", ".tmp", dir);
        boolean moved = false;
        try {
            try (FileOutputStream out = new FileOutputStream(tmp)) {
                out.write(data);
                out.flush();
                out.getFD().sync();
            }
            try {
                Files.move(tmp.toPath(), target.toPath(), StandardCopyOption.ATOMIC_MOVE,
                        StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException ex) {
                Files.move(tmp.toPath(), target.toPath(), StandardCopyOption.REPLACE_EXISTING);
            }
            moved = true;
        } finally {
            if (!moved) {
                tmp.delete();
            }
        }
    }

    public static void writeJson(File target, Object doc) throws IOException {
        write(target, (Json.write(doc) + "\n").getBytes(StandardCharsets.UTF_8));
    }

    public static String readText(File file) throws IOException {
        return new String(Files.readAllBytes(file.toPath()), StandardCharsets.UTF_8);
    }
}
