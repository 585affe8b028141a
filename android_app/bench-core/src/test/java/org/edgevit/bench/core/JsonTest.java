package org.edgevit.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    @Test
    public void roundTripKeepsTypesAndOrder() {
        String text = "{\"b\": 1, \"a\": [1.5, -2e-3, true, null, \"x\\\"y\\n\\u00e9\"], \"c\": {}}";
        Map<String, Object> doc = Json.parseObject(text);
        assertEquals(Arrays.asList("b", "a", "c"), Arrays.asList(doc.keySet().toArray()));
        assertEquals(1L, doc.get("b"));
        List<?> a = (List<?>) doc.get("a");
        assertEquals(1.5, (Double) a.get(0), 0.0);
        assertEquals(-0.002, (Double) a.get(1), 0.0);
        assertEquals(Boolean.TRUE, a.get(2));
        assertNull(a.get(3));
        assertEquals("x\"y\né", a.get(4));
        assertEquals(doc, Json.parseObject(Json.write(doc)));
    }

    @Test
    public void rejectsMalformedTextAndNaN() {
        for (String bad : new String[]{"{\"a\": 1", "{\"a\" 1}", "[1,]x", "{\"a\": tru}", "\"\\q\"", ""}) {
            assertThrows(bad, Json.JsonException.class, () -> Json.parse(bad));
        }
        assertThrows(Json.JsonException.class, () -> Json.write(Double.NaN));
    }
}
