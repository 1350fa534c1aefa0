#include <gtest/gtest.h>

#include <delegate/policies/reason.hpp>

namespace delegate::policies {
namespace {

// The wire strings are an interface (docs/authorization.md): spelled out here, not derived.
TEST(Reason, ContractStringsRoundTrip) {
  const std::vector<std::pair<Reason, const char*>> all = {
      {Reason::no_authorization, "no_authorization"}, {Reason::token_malformed, "token_malformed"},
      {Reason::alg_not_allowed, "alg_not_allowed"},   {Reason::unknown_key, "unknown_key"},
      {Reason::bad_signature, "bad_signature"},       {Reason::expired, "expired"},
      {Reason::not_yet_valid, "not_yet_valid"},       {Reason::wrong_issuer, "wrong_issuer"},
      {Reason::wrong_audience, "wrong_audience"},     {Reason::wrong_type, "wrong_type"},
      {Reason::replayed, "replayed"},                 {Reason::missing_scope, "missing_scope"},
      {Reason::role_not_allowed, "role_not_allowed"}, {Reason::binding_mismatch, "binding_mismatch"},
      {Reason::api_key_unknown, "api_key_unknown"},   {Reason::api_key_expired, "api_key_expired"},
      {Reason::api_key_revoked, "api_key_revoked"},   {Reason::unknown_runbook, "unknown_runbook"},
      {Reason::invalid_params, "invalid_params"},     {Reason::inline_not_allowed, "inline_not_allowed"},
  };
  EXPECT_EQ(all.size(), 20u);
  for (const auto& [r, s] : all) {
    EXPECT_EQ(to_string(r), s);
    EXPECT_EQ(parse_reason(s), r) << s;
  }
  EXPECT_FALSE(parse_reason(""));
  EXPECT_FALSE(parse_reason("Expired"));
  EXPECT_FALSE(parse_reason("expired "));
  EXPECT_FALSE(parse_reason("unknown"));
}

}  // namespace
}  // namespace delegate::policies
