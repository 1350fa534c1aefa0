// Output masking throughput: MB/s of step output through MaskingStream (the path every
// output chunk takes) against a plain copy of the same bytes, in the same run.
#include <algorithm>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <delegate/connectors/masker.hpp>

#include "benches.hpp"

namespace delegate::bench {

void mask_rows(Table& t) {
  // 4 MiB of log-like text, written by the step in 4 KiB chunks (a pipe's usual read),
  // with one of the secrets on one line in a thousand.
  const std::vector<std::string> secrets = {"ghp_3f9a0c7e1b2d4f6a8c0e", "sk-live-91b2c3d4e5f60718", "db-password:hunter2!"};
  std::string text;
  for (int i = 0; text.size() < (4u << 20); ++i) {
    text += "2026-12-01T21:00:00Z level=info msg=\"request served\" path=/api/v1/items/" + std::to_string(i) +
            " status=200 dur_ms=12\n";
    if (i % 1000 == 0) text += "token=" + secrets[static_cast<std::size_t>(i / 1000) % secrets.size()] + "\n";
  }
  constexpr std::size_t kChunk = 4096;
  connectors::Masker masker;
  for (const auto& s : secrets) (void)masker.add(s);
  auto timed = [&](auto&& f) {
    double best = 1e300;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      f();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return static_cast<double>(text.size()) / (1 << 20) / best;
  };
  std::size_t sink = 0;
  const double masked = timed([&] {
    connectors::MaskingStream stream(masker);
    for (std::size_t off = 0; off < text.size(); off += kChunk) {
      sink += stream.write(std::string_view(text).substr(off, kChunk)).size();
    }
    sink += stream.finish().size();
  });
  std::vector<char> dst(kChunk);
  const double copied = timed([&] {
    for (std::size_t off = 0; off < text.size(); off += kChunk) {
      const std::size_t n = std::min(kChunk, text.size() - off);
      std::memcpy(dst.data(), text.data() + off, n);
      sink += static_cast<unsigned char>(dst[n - 1]);
    }
  });
  t.add({.what = "output masking (3 secrets, " + std::to_string(masker.patterns().size()) + " patterns, 4 KiB writes)",
         .value = masked, .unit = "MB/s", .ref_name = "memcpy", .ref = copied, .better = Better::higher,
         .note = "best of 5 over 4 MiB of log lines"});
  if (sink == 0) std::printf("(nothing)\n");
}

}  // namespace delegate::bench
