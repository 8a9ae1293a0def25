import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

public class HikerTest {
    @Test
    public void lifeTheUniverseAndEverything() {
        assertEquals(42, Hiker.answer());
    }
}
