package org.edgevit.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

import java.util.Arrays;
import java.util.Collections;
import org.junit.Test;

public class StatsTest {
    @Test
    public void sameDefinitionsAsTheHost() {
        // numpy: percentile([1..10], 90) = 9.1, population std of 1..10 = 2.8722813232690143
        Stats s = Stats.of(Arrays.asList(10.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0));
        assertEquals(10, s.count);
        assertEquals(5.5, s.mean, 1e-12);
        assertEquals(5.5, s.median, 1e-12);
        assertEquals(9.1, s.p90, 1e-12);
        assertEquals(9.91, s.p99, 1e-12);
        assertEquals(2.8722813232690143, s.std, 1e-12);
        assertEquals(1.0, s.min, 0.0);
        assertEquals(10.0, s.max, 0.0);
        assertEquals(5.5, s.trimmedMean, 1e-12);   // drops 1 and 10
        Stats skew = Stats.of(Arrays.asList(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 100.0));
        assertEquals(1.0, skew.trimmedMean, 0.0);
    }

    @Test
    public void refusesEmptyAndNegative() {
        assertThrows(IllegalArgumentException.class, () -> Stats.of(Collections.<Double>emptyList()));
        assertThrows(IllegalArgumentException.class, () -> Stats.of(Arrays.asList(1.0, -1.0)));
    }
}
