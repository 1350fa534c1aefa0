// libFuzzer target for the spool's on-disk format: segment headers and blocks are read
// back from state_dir, which an attacker with disk access may have edited. Parsing must
// never crash, and only an authentic block may decrypt.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "../../agent/src/spool_format.hpp"

namespace fmt = delegate::agent::spoolfmt;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const fmt::Key master{1, 2, 3, 4, 5, 6, 7, 8};
  const fmt::Uuid uuid{9, 9, 9, 9};

  if (input.size() >= fmt::kHeaderBytes) (void)fmt::parse_header(master, input.substr(0, fmt::kHeaderBytes));

  // The input as a block body: parse the clear head, then try to authenticate it.
  const auto seg_key = fmt::segment_key(master, uuid);
  if (auto head = fmt::parse_head(input)) {
    fmt::BlockHead h = *head;
    (void)fmt::decode_block(seg_key.bytes, uuid, input, h);
  }

  // Round trip: a block we encode must decode to the same plaintext and head; the same
  // block with any byte flipped must not.
  fmt::BlockHead head;
  head.index = static_cast<std::uint32_t>(size);
  head.agent = "agt_fuzz";
  head.job = "job_fuzz";
  head.seq = size;
  std::string block;
  fmt::encode_block(seg_key.bytes, uuid, head, input, block);
  const std::string_view body = std::string_view(block).substr(4);  // after the length prefix
  fmt::BlockHead back;
  auto plain = fmt::decode_block(seg_key.bytes, uuid, body, back);
  if (!plain || *plain != input || back.seq != head.seq || back.job != head.job) std::abort();
  if (!body.empty()) {
    std::string flipped(body);
    flipped[size % flipped.size()] ^= 0x01;
    fmt::BlockHead h2;
    if (auto p = fmt::decode_block(seg_key.bytes, uuid, flipped, h2); p && *p == input && h2.seq == head.seq &&
                                                                         h2.job == head.job && h2.index == head.index) {
      std::abort();
    }
  }
  return 0;
}
