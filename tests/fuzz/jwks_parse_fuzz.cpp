// libFuzzer target: a JWKS document as fetched from an issuer (file or URL). Invariants:
// no crash, no exception, every returned key has a key object and at most one key per kid.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <delegate/policies/jwks.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace delegate::policies;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  static const std::vector<JwsAlg> all{JwsAlg::rs256, JwsAlg::ps256, JwsAlg::es256, JwsAlg::es384,
                                       JwsAlg::eddsa};
  static const std::vector<JwsAlg> rs_only{JwsAlg::rs256};
  for (const auto* algs : {&all, &rs_only}) {
    auto set = parse_jwks(text, *algs);
    if (!set) continue;
    std::set<std::string> kids;
    for (const auto& k : set->keys) {
      if (!k.key) std::abort();
      if (!kids.insert(k.kid).second) std::abort();
      if (k.kid.size() > kMaxKidBytes) std::abort();
    }
  }
  return 0;
}
