// Structural parsing of a compact JWS: everything that can be rejected without a key is
// rejected here, before any cryptographic code sees attacker-controlled bytes.
#include <algorithm>
#include <cctype>
#include <delegate/common/encoding.hpp>
#include <delegate/policies/jwt.hpp>

namespace delegate::policies {

std::string_view to_string(JwtStatus s) {
  switch (s) {
    case JwtStatus::ok:
      return "ok";
    case JwtStatus::too_large:
      return "too_large";
    case JwtStatus::bad_structure:
      return "bad_structure";
    case JwtStatus::bad_base64:
      return "bad_base64";
    case JwtStatus::bad_json:
      return "bad_json";
    case JwtStatus::bad_header:
      return "bad_header";
    case JwtStatus::alg_not_allowed:
      return "alg_not_allowed";
    case JwtStatus::key_alg_mismatch:
      return "key_alg_mismatch";
    case JwtStatus::unknown_key:
      return "unknown_key";
    case JwtStatus::bad_signature:
      return "bad_signature";
    case JwtStatus::wrong_type:
      return "wrong_type";
    case JwtStatus::wrong_issuer:
      return "wrong_issuer";
    case JwtStatus::wrong_audience:
      return "wrong_audience";
    case JwtStatus::expired:
      return "expired";
    case JwtStatus::not_yet_valid:
      return "not_yet_valid";
    case JwtStatus::bad_claim:
      return "bad_claim";
    case JwtStatus::lifetime_exceeded:
      return "lifetime_exceeded";
    case JwtStatus::replayed:
      return "replayed";
    case JwtStatus::binding_mismatch:
      return "binding_mismatch";
  }
  return "?";
}

Reason to_reason(JwtStatus s) {
  switch (s) {
    case JwtStatus::too_large:
    case JwtStatus::bad_structure:
    case JwtStatus::bad_base64:
    case JwtStatus::bad_json:
    case JwtStatus::bad_header:
    case JwtStatus::bad_claim:
    case JwtStatus::lifetime_exceeded:
      return Reason::token_malformed;
    case JwtStatus::alg_not_allowed:
    case JwtStatus::key_alg_mismatch:
      return Reason::alg_not_allowed;
    case JwtStatus::unknown_key:
      return Reason::unknown_key;
    case JwtStatus::bad_signature:
      return Reason::bad_signature;
    case JwtStatus::wrong_type:
      return Reason::wrong_type;
    case JwtStatus::wrong_issuer:
      return Reason::wrong_issuer;
    case JwtStatus::wrong_audience:
      return Reason::wrong_audience;
    case JwtStatus::expired:
      return Reason::expired;
    case JwtStatus::not_yet_valid:
      return Reason::not_yet_valid;
    case JwtStatus::replayed:
      return Reason::replayed;
    case JwtStatus::binding_mismatch:
      return Reason::binding_mismatch;
    case JwtStatus::ok:
      break;  // not a denial; callers never map ok
  }
  return Reason::token_malformed;
}

TokenCheck to_token_check(const JwtResult& r) {
  TokenCheck out;
  if (!r) {
    out.deny = to_reason(r.error().status);
    out.detail = r.error().detail;
    return out;
  }
  out.principal.issuer = r->issuer;
  out.principal.subject = r->subject;
  out.principal.scopes = r->scopes;
  out.principal.roles = r->roles;
  return out;
}

namespace {

std::unexpected<JwtFailure> failure(JwtStatus s, std::string detail) {
  return std::unexpected(JwtFailure{s, std::move(detail)});
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Control characters (C0, DEL, C1) in any name or string of the header or the claims:
// nothing legitimate needs them, and they would reach logs, audit details and the
// argv of a step. The JSON reader has already refused bytes that are not UTF-8.
bool has_control(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return true;
    if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(s[i + 1]) <= 0x9f)
      return true;
  }
  return false;
}

bool contains_control(const Json& j) {
  if (j.is_string()) return has_control(j.get_ref<const std::string&>());
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (has_control(k) || contains_control(v)) return true;
    }
    return false;
  }
  if (j.is_array()) {
    for (const auto& v : j) {
      if (contains_control(v)) return true;
    }
  }
  return false;
}

std::expected<Json, JwtFailure> decode_object(std::string_view segment, const char* what) {
  auto bytes = base64url_decode(segment);
  if (!bytes)
    return failure(JwtStatus::bad_base64, std::string(what) + " is not unpadded base64url");
  std::string_view text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  auto json = parse_json_strict(text, JsonLimits{kMaxTokenBytes, kMaxJoseDepth});
  if (!json) return failure(JwtStatus::bad_json, std::string(what) + ": " + json.error().message);
  if (!json->is_object())
    return failure(JwtStatus::bad_json, std::string(what) + " is not a JSON object");
  if (contains_control(*json))
    return failure(JwtStatus::bad_json, std::string(what) + " contains a control character");
  return std::move(*json);
}

// Headers that would let the token pick its own key, change how the payload is
// interpreted, or demand extensions we do not implement. jku/x5u would make the agent
// fetch attacker URLs; jwk/x5c would let the token carry its own key. None is ever
// used, and their presence is refused outright so no later code can start using them.
std::optional<JwtFailure> check_header(const Json& h) {
  for (const char* name : {"crit", "jku", "x5u", "x5c", "jwk", "zip", "enc"}) {
    if (h.contains(name))
      return JwtFailure{JwtStatus::bad_header,
                        std::string("header \"") + name + "\" is not accepted"};
  }
  if (auto it = h.find("b64"); it != h.end()) {
    if (!it->is_boolean() || !it->get<bool>())
      return JwtFailure{JwtStatus::bad_header, "unencoded payload (b64) is not accepted"};
  }
  if (auto it = h.find("cty"); it != h.end()) {
    if (!it->is_string()) return JwtFailure{JwtStatus::bad_header, "cty is not a string"};
    const auto& cty = it->get_ref<const std::string&>();
    if (iequals(cty, "JWT") || iequals(cty, "application/jwt")) {
      return JwtFailure{JwtStatus::bad_header, "nested tokens (cty JWT) are not accepted"};
    }
  }
  if (auto it = h.find("typ"); it != h.end() && !it->is_string()) {
    return JwtFailure{JwtStatus::bad_header, "typ is not a string"};
  }
  if (auto it = h.find("kid"); it != h.end()) {
    if (!it->is_string()) return JwtFailure{JwtStatus::bad_header, "kid is not a string"};
    if (it->get_ref<const std::string&>().size() > kMaxKidBytes)
      return JwtFailure{JwtStatus::bad_header, "kid longer than 256 bytes"};
  }
  return std::nullopt;
}

}  // namespace

std::expected<ParsedJwt, JwtFailure> parse_jwt(std::string_view token) {
  // Before decoding anything: the cap bounds all later work.
  if (token.size() > kMaxTokenBytes)
    return failure(JwtStatus::too_large, "token longer than 8 KiB");
  const auto d1 = token.find('.');
  if (d1 == std::string_view::npos)
    return failure(JwtStatus::bad_structure, "token is not three segments");
  const auto d2 = token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) {
    return failure(JwtStatus::bad_structure, "token is not three segments");
  }
  const std::string_view h = token.substr(0, d1);
  const std::string_view p = token.substr(d1 + 1, d2 - d1 - 1);
  const std::string_view s = token.substr(d2 + 1);
  if (h.empty() || p.empty() || s.empty())
    return failure(JwtStatus::bad_structure, "token has an empty segment");

  ParsedJwt out;
  auto header = decode_object(h, "header");
  if (!header) return std::unexpected(header.error());
  out.header = std::move(*header);
  auto payload = decode_object(p, "payload");
  if (!payload) return std::unexpected(payload.error());
  out.payload = std::move(*payload);
  auto sig = base64url_decode(s);
  if (!sig) return failure(JwtStatus::bad_base64, "signature is not unpadded base64url");
  out.signature.assign(sig->begin(), sig->end());

  auto alg = out.header.find("alg");
  if (alg == out.header.end() || !alg->is_string())
    return failure(JwtStatus::bad_header, "alg missing or not a string");
  if (auto bad = check_header(out.header)) return std::unexpected(*bad);
  out.alg_name = alg->get<std::string>();
  out.alg = parse_jws_alg(out.alg_name);
  if (auto kid = out.header.find("kid"); kid != out.header.end()) out.kid = kid->get<std::string>();
  out.signing_input = token.substr(0, d2);
  return out;
}

}  // namespace delegate::policies
