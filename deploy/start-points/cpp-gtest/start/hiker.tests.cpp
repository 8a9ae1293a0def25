#include "hiker.hpp"
#include <gtest/gtest.h>

TEST(Hiker, LifeTheUniverseAndEverything)
{
    EXPECT_EQ(42, answer());
}
