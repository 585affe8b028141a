package org.edgevit.bench.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.junit.Test;

public class NpyTest {
    @Test
    public void roundTripWithAlignedHeader() throws IOException {
        Tensor t = new Tensor(new float[]{1f, -2.5f, 3e-8f, 4f, 5f, 6f}, new int[]{1, 2, 3});
        byte[] raw = Npy.encode(t);
        int headerLen = (raw[8] & 0xff) | ((raw[9] & 0xff) << 8);
        assertEquals(0, (10 + headerLen) % 64);
        assertEquals('\n', raw[10 + headerLen - 1]);
        String header = new String(raw, 10, headerLen, StandardCharsets.ISO_8859_1);
        assertEquals(true, header.contains("'shape': (1, 2, 3)"));
        Tensor back = Npy.decode(raw, "t");
        assertArrayEquals(t.shape, back.shape);
        assertArrayEquals(t.data, back.data, 0f);
        Tensor vec = Npy.decode(Npy.encode(new Tensor(new float[]{7f}, new int[]{1})), "v");
        assertArrayEquals(new int[]{1}, vec.shape);
    }

    @Test
    public void rejectsOtherDtypesAndTruncation() {
        byte[] raw = Npy.encode(new Tensor(new float[]{1f, 2f}, new int[]{2}));
        byte[] f8 = new String(raw, StandardCharsets.ISO_8859_1).replace("<f4", "<f8").getBytes(StandardCharsets.ISO_8859_1);
        assertThrows(IOException.class, () -> Npy.decode(f8, "f8"));
        byte[] cut = java.util.Arrays.copyOf(raw, raw.length - 1);
        assertThrows(IOException.class, () -> Npy.decode(cut, "cut"));
    }
}
