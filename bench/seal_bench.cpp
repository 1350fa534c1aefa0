// Record sealing: JCS + SHA-256 + Ed25519 of one output record, against the raw
// Ed25519 signature of 32 bytes that it contains.
#include <chrono>
#include <string>
#include <vector>

#include <delegate/audit/chain.hpp>
#include <delegate/common/crypto.hpp>

#include "benches.hpp"
#include "timing.hpp"

namespace delegate::bench {

void seal_rows(Table& t) {
  auto key = Ed25519PrivateKey::generate();
  SystemClock clock;
  audit::ChainWriter w(*key, clock, "agt_bench", "job_bench");
  Json data{{"step", "s"}, {"stream", "stdout"}, {"b64", std::string(1024, 'A')}};
  const double seal = time_us([&] { (void)w.append(audit::Kind::output, data); }, 2000);
  Sha256 h = sha256("x");
  const double raw_sign = time_us([&] { (void)key->sign(h); }, 2000);
  t.add({.what = "seal one output record (1 KiB)", .value = seal, .unit = "us",
         .ref_name = "OpenSSL Ed25519 sign 32 B", .ref = raw_sign, .note = "medians of 2000"});
}

}  // namespace delegate::bench
