// MaskingStream finds all patterns in one pass (Masker::find_all). This holds it to the
// straightforward search it replaced (every pattern searched separately with
// std::string::find), byte for byte, over random text full of secrets in every form,
// written in random chunks, byte-at-a-time and split at every offset.
#include <delegate/connectors/masker.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

using delegate::connectors::kMask;
using delegate::connectors::Masker;
using delegate::connectors::MaskingStream;

namespace {

// The previous MaskingStream, pattern by pattern.
class ReferenceStream {
 public:
  explicit ReferenceStream(const Masker& m) : m_(m) {}
  std::string write(std::string_view chunk) {
    held_.append(chunk);
    return process(false);
  }
  std::string finish() {
    std::string out = process(true);
    held_.clear();
    carry_ = 0;
    ended_masked_ = false;
    return out;
  }

 private:
  struct Span {
    std::size_t begin, end;
  };
  std::string process(bool final) {
    const std::string& buf = held_;
    const std::size_t size = buf.size();
    const auto& patterns = m_.patterns();
    if (patterns.empty()) {
      std::string out = std::move(held_);
      held_.clear();
      return out;
    }
    std::vector<Span> spans;
    if (carry_ > 0) spans.push_back({0, carry_});
    for (const auto& p : patterns) {
      for (std::size_t at = buf.find(p); at != std::string::npos; at = buf.find(p, at + 1)) spans.push_back({at, at + p.size()});
    }
    std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
    std::vector<Span> merged;
    for (const auto& s : spans) {
      if (!merged.empty() && s.begin <= merged.back().end) merged.back().end = std::max(merged.back().end, s.end);
      else merged.push_back(s);
    }
    std::size_t hold = size;
    if (!final) {
      const std::size_t longest = m_.longest();
      for (std::size_t i = size > longest - 1 ? size - (longest - 1) : 0; i < size && hold == size; ++i) {
        const std::string_view tail(buf.data() + i, size - i);
        for (const auto& p : patterns) {
          if (p.size() > tail.size() && std::string_view(p).starts_with(tail)) {
            hold = i;
            break;
          }
        }
      }
    }
    std::string out;
    std::size_t pos = 0;
    std::size_t carry = carry_ > hold ? carry_ - hold : 0;
    bool last_masked = ended_masked_;
    for (const auto& m : merged) {
      if (m.begin >= hold) break;
      if (m.begin > pos) {
        out.append(buf, pos, m.begin - pos);
        last_masked = false;
      }
      if (!last_masked) out += kMask;
      last_masked = true;
      pos = std::min(m.end, hold);
      if (m.end > hold) carry = std::max(carry, m.end - hold);
    }
    if (hold > pos) {
      out.append(buf, pos, hold - pos);
      last_masked = false;
    }
    ended_masked_ = last_masked;
    held_.erase(0, hold);
    carry_ = carry;
    return out;
  }
  const Masker& m_;
  std::string held_;
  std::size_t carry_ = 0;
  bool ended_masked_ = false;
};

// Text with every form of every secret, partial forms, overlapping and adjacent ones.
std::string corpus(const Masker& m, std::mt19937& rng, std::size_t bytes) {
  const auto& pats = m.patterns();
  std::string s;
  while (s.size() < bytes) {
    switch (rng() % 6) {
      case 0: s += pats[rng() % pats.size()]; break;
      case 1: {  // a proper prefix: must be held, then released
        const auto& p = pats[rng() % pats.size()];
        s += p.substr(0, 1 + rng() % (p.size() - 1));
        break;
      }
      case 2: {  // two forms overlapping by a few bytes
        const auto& a = pats[rng() % pats.size()];
        const auto& b = pats[rng() % pats.size()];
        s += a + b.substr(std::min<std::size_t>(b.size(), rng() % 4));
        break;
      }
      default:
        for (std::size_t i = rng() % 40; i > 0; --i) s.push_back("abcdef0123456789ABCDEF=+/-_%\\\" \n"[rng() % 32]);
    }
  }
  return s;
}

Masker make_masker(std::initializer_list<std::string_view> secrets) {
  Masker m;
  for (auto s : secrets) EXPECT_TRUE(m.add(s).has_value());
  return m;
}

void expect_same_chunked(const Masker& m, const std::string& text, const std::vector<std::size_t>& cuts) {
  MaskingStream fast(m);
  ReferenceStream ref(m);
  std::string got, want;
  std::size_t pos = 0;
  for (std::size_t cut : cuts) {
    got += fast.write(std::string_view(text).substr(pos, cut - pos));
    want += ref.write(std::string_view(text).substr(pos, cut - pos));
    pos = cut;
  }
  got += fast.write(std::string_view(text).substr(pos));
  want += ref.write(std::string_view(text).substr(pos));
  got += fast.finish();
  want += ref.finish();
  ASSERT_EQ(got, want);
}

}  // namespace

TEST(MaskerSinglePass, SameBytesAsPerPatternSearchInRandomChunks) {
  std::mt19937 rng(7);
  const Masker m = make_masker({"ghp_3f9a0c7e1b2d4f6a8c0e", "sk-live-91b2c3d4e5f60718", "p\xc3\xa4ss \"w/rd\"\\\n01",
                                "aaaaaaaaaaaa", "aaaaaaab"});
  for (int round = 0; round < 40; ++round) {
    const std::string text = corpus(m, rng, 4000);
    std::vector<std::size_t> cuts;
    for (std::size_t at = rng() % 64; at < text.size(); at += 1 + rng() % 300) cuts.push_back(at);
    expect_same_chunked(m, text, cuts);
    expect_same_chunked(m, text, {});
  }
}

TEST(MaskerSinglePass, SameBytesSplitAtEveryOffsetAndByteAtATime) {
  std::mt19937 rng(11);
  const Masker m = make_masker({"hunter2hunter2", "0123456789abcdef", "s3cr3t-t0k3n"});
  const std::string text = corpus(m, rng, 600);
  for (std::size_t cut = 0; cut <= text.size(); ++cut) expect_same_chunked(m, text, {cut});
  std::vector<std::size_t> every(text.size());
  for (std::size_t i = 0; i < every.size(); ++i) every[i] = i;
  expect_same_chunked(m, text, every);
}

TEST(MaskerSinglePass, FindAllReportsOverlappingOccurrences) {
  const Masker m = make_masker({"aaaaaaaaaaaa"});
  std::vector<std::pair<std::size_t, std::size_t>> found;
  m.find_all(std::string(14, 'a'), [&](std::size_t b, std::size_t e) { found.emplace_back(b, e); });
  std::sort(found.begin(), found.end());
  const std::vector<std::pair<std::size_t, std::size_t>> want = {{0, 12}, {1, 13}, {2, 14}};
  EXPECT_EQ(found, want);
}
