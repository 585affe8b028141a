package org.edgevit.bench.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The .npy format for the protocol's tensors: little-endian float32 ({@code '<f4'}), C order. Reads format
 * 1.0 to 3.0 headers, writes 1.0 (header padded to 64 bytes, as numpy does). Python twin:
 * protocol.save_npy / load_npy.
 */
public final class Npy {
    private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
    private static final Pattern DESCR = Pattern.compile("'descr'\\s*:\\s*'([^']*)'");
    private static final Pattern FORTRAN = Pattern.compile("'fortran_order'\\s*:\\s*(True|False)");
    private static final Pattern SHAPE = Pattern.compile("'shape'\\s*:\\s*\\(([^)]*)\\)");

    private Npy() {
    }

    public static Tensor read(File file) throws IOException {
        return decode(Files.readAllBytes(file.toPath()), file.getName());
    }

    public static Tensor decode(byte[] raw, String name) throws IOException {
        if (raw.length < 10) {
            throw new IOException(name + ": too short for a .npy file");
        }
        for (int i = 0; i < MAGIC.length; i++) {
            if (raw[i] != MAGIC[i]) {
                throw new IOException(name + ": not a .npy file (bad magic)");
            }
        }
        int major = raw[6] & 0xff;
        ByteBuffer buf = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        int headerLen;
        int offset;
        if (major == 1) {
            headerLen = buf.getShort(8) & 0xffff;
            offset = 10;
        } else if (major == 2 || major == 3) {
            headerLen = buf.getInt(8);
            offset = 12;
        } else {
            throw new IOException(name + ": unsupported .npy version " + major);
        }
        if (headerLen < 0 || offset + headerLen > raw.length) {
            throw new IOException(name + ": truncated header");
        }
        String header = new String(raw, offset, headerLen, StandardCharsets.ISO_8859_1);
        Matcher descr = DESCR.matcher(header);
        Matcher fortran = FORTRAN.matcher(header);
        Matcher shapeM = SHAPE.matcher(header);
        if (!descr.find() || !fortran.find() || !shapeM.find()) {
            throw new IOException(name + ": unreadable .npy header " + header.trim());
        }
        if (!descr.group(1).equals("<f4")) {
            throw new IOException(name + ": dtype " + descr.group(1) + ", the protocol carries '<f4' (float32)");
        }
        if (fortran.group(1).equals("True")) {
            throw new IOException(name + ": Fortran order is not supported (write C order)");
        }
        List<Integer> dims = new ArrayList<>();
        for (String part : shapeM.group(1).split(",")) {
            String p = part.trim();
            if (!p.isEmpty()) {
                dims.add(Integer.parseInt(p));
            }
        }
        int[] shape = new int[dims.size()];
        long count = 1;
        for (int i = 0; i < shape.length; i++) {
            shape[i] = dims.get(i);
            count *= shape[i];
        }
        int dataStart = offset + headerLen;
        if ((long) raw.length - dataStart != count * 4) {
            throw new IOException(name + ": " + (raw.length - dataStart) + " data bytes for " + count + " float32 values");
        }
        float[] data = new float[(int) count];
        ByteBuffer body = ByteBuffer.wrap(raw, dataStart, raw.length - dataStart).order(ByteOrder.LITTLE_ENDIAN);
        body.asFloatBuffer().get(data);
        return new Tensor(data, shape);
    }

    public static byte[] encode(Tensor t) {
        StringBuilder shape = new StringBuilder("(");
        for (int i = 0; i < t.shape.length; i++) {
            shape.append(t.shape[i]);
            shape.append(t.shape.length == 1 ? "," : (i + 1 < t.shape.length ? ", " : ""));
        }
        shape.append(")");
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
        int total = 10 + dict.length() + 1;
        int pad = (64 - total % 64) % 64;
        StringBuilder header = new StringBuilder(dict);
        for (int i = 0; i < pad; i++) {
            header.append(' ');
        }
        header.append('\n');
        byte[] h = header.toString().getBytes(StandardCharsets.ISO_8859_1);
        ByteArrayOutputStream out = new ByteArrayOutputStream(10 + h.length + t.data.length * 4);
        out.write(MAGIC, 0, MAGIC.length);
        out.write(1);
        out.write(0);
        out.write(h.length & 0xff);
        out.write((h.length >> 8) & 0xff);
        out.write(h, 0, h.length);
        ByteBuffer body = ByteBuffer.allocate(t.data.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        body.asFloatBuffer().put(t.data);
        out.write(body.array(), 0, body.capacity());
        return out.toByteArray();
    }

    public static void write(File file, Tensor t) throws IOException {
        AtomicFiles.write(file, encode(t));
    }
}
