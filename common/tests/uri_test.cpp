#include <gtest/gtest.h>

#include <string>

#include <delegate/common/uri.hpp>

namespace delegate {
namespace {

TEST(PercentEncode, KeepsOnlyUnreservedBytes) {
  EXPECT_EQ(percent_encode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(percent_encode("a/../b?x=1&y#z %"), "a%2F..%2Fb%3Fx%3D1%26y%23z%20%25");
  EXPECT_EQ(percent_encode(std::string("\0\r\n\xff", 4)), "%00%0D%0A%FF");
  EXPECT_EQ(percent_encode("chat:write"), "chat%3Awrite");
  EXPECT_EQ(percent_encode(""), "");
}

}  // namespace
}  // namespace delegate
