// libFuzzer target: an access token as the (untrusted) control plane relays it, verified
// against a fixed small JWKS. Invariants: no crash, no exception, nothing over the size
// cap parses, and an accepted token always yields an issuer and a subject.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <delegate/policies/jwks.hpp>
#include <delegate/policies/jwt.hpp>
#include <string_view>
#include <vector>

namespace {

using namespace delegate::policies;

// Public halves of the keys that signed the seed tokens in corpus/jwt/, so the seeds
// reach signature verification and the claims checks behind it.
constexpr std::string_view kJwks = R"({"keys":[
{"alg":"ES256","crv":"P-256","kid":"ec","kty":"EC","use":"sig","x":"bNF3n2ksqzTLyB_o1AFikozcrcT5Tw4FUUJ76W9ROLE","y":"ZZpnryxaQkOEzzl_S9_UyBQ9pRs3Z7YS6dU62b2wBxM"},
{"alg":"EdDSA","crv":"Ed25519","kid":"ed","kty":"OKP","use":"sig","x":"wJSCreO6kRCKoMpbiEmvswAIIaeStFfJRctBa_cNrvg"},
{"alg":"RS256","e":"AQAB","kid":"rsa","kty":"RSA","n":"rr5Eyzk4SHe-b0MKm264Q0m9eHXaqen39L0uGPNuMCCN-zlAXKR9g2-yNW5x44YgB1mjK1eviqYM3EwhQKDpDcWOnRutpCyWLNaO5vgbQrFXI7O1mFe_WcoEkm38ZmwF5bw-E_QK42Lt7lbgMulv3wTsmRjD1oZGZ6pIB5TcXOOh7dt5tYE5EK12XTYbkV6HXQcBkYsY8Fz4C_8-ivcLbGksO0-Kgknyw9NPzcJbuybkLzMths9b64VEt4TKmsEdDxjR8TEBPRidU_eAp3niMoeUFKJnesnS7aOPadmODzOhkzdy9CjWguO2Pvk7hYyonCONt7YdRaYE5b9r_4eaPQ","use":"sig"}]})";

const JwkSet& keys() {
  static const JwkSet set = [] {
    const std::vector<JwsAlg> all{JwsAlg::rs256, JwsAlg::ps256, JwsAlg::es256, JwsAlg::es384,
                                  JwsAlg::eddsa};
    auto s = parse_jwks(kJwks, all);
    if (!s) std::abort();
    return std::move(*s);
  }();
  return set;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view token(reinterpret_cast<const char*>(data), size);
  IssuerPolicy policy;
  policy.issuer = "https://idp.example.com";
  policy.audience = "delegate-agent";
  policy.require_authorization_details = (size % 2) == 1;
  Job job;
  job.runbook = "restart-service";
  VerifyContext ctx{delegate::TimePoint{std::chrono::seconds(1'800'000'000)}, &job, nullptr};
  auto parsed = parse_jwt(token);
  if (parsed && token.size() > kMaxTokenBytes) std::abort();
  auto result = verify_jwt(token, keys(), policy, ctx);
  // Seeds are genuinely signed and may pass; anything accepted must be complete.
  if (result && (result->subject.empty() || result->issuer != policy.issuer)) std::abort();
  (void)to_token_check(result);
  return 0;
}
