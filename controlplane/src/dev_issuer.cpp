#include "dev_issuer.hpp"

#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>

namespace delegate::controlplane {
namespace {

constexpr std::int64_t kTokenLifetimeS = 300;

std::string percent_decode(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%' && i + 2 < in.size()) {
      auto hex = hex_decode(std::string{static_cast<char>(std::tolower(in[i + 1])), static_cast<char>(std::tolower(in[i + 2]))});
      if (hex && hex->size() == 1) {
        out += static_cast<char>((*hex)[0]);
        i += 2;
      } else {
        out += in[i];
      }
    } else {
      out += in[i];
    }
  }
  return out;
}

std::map<std::string, std::string> parse_form(std::string_view body) {
  std::map<std::string, std::string> out;
  std::size_t i = 0;
  while (i < body.size()) {
    auto amp = body.find('&', i);
    if (amp == std::string_view::npos) amp = body.size();
    auto pair = body.substr(i, amp - i);
    auto eq = pair.find('=');
    if (eq != std::string_view::npos) out[percent_decode(pair.substr(0, eq))] = percent_decode(pair.substr(eq + 1));
    i = amp + 1;
  }
  return out;
}

DevIssuer::Answer oauth_error(unsigned status, const char* error, const std::string& description) {
  return {status, Json{{"error", error}, {"error_description", description}}};
}

}  // namespace

Result<void> DevIssuer::init(const std::filesystem::path& dir) {
  auto key = Ed25519PrivateKey::generate();
  if (!key) return std::unexpected(key.error());
  if (auto r = key->save(dir / "oauth-signing.key"); !r) return r;
  Json clients{{"clients",
                Json::array({Json{{"client_id", "incident-bot"},
                                  {"client_secret", base64url_encode(random_bytes(32))},
                                  {"scopes", Json::array({"runbooks:execute"})},
                                  {"roles", Json::array({"sre-oncall"})}}})}};
  return write_file_atomic(dir / "oauth-clients.json", clients.dump(2) + "\n", 0600);
}

Result<std::unique_ptr<DevIssuer>> DevIssuer::load(const std::filesystem::path& dir, std::string issuer) {
  auto key = Ed25519PrivateKey::load(dir / "oauth-signing.key");
  if (!key) return std::unexpected(key.error());
  auto text = read_secret_file(dir / "oauth-clients.json");
  if (!text) return std::unexpected(text.error());
  auto j = parse_json_strict(*text);
  if (!j || !j->is_object() || !(*j)["clients"].is_array()) return fail(Errc::parse, "oauth-clients.json: expected {\"clients\": [...]}");
  std::vector<DevClient> clients;
  try {
    for (const auto& c : (*j)["clients"]) {
      DevClient d;
      d.client_id = c.at("client_id").get<std::string>();
      d.client_secret = c.at("client_secret").get<std::string>();
      d.scopes = c.at("scopes").get<std::vector<std::string>>();
      d.roles = c.value("roles", std::vector<std::string>{});
      if (d.client_id.empty() || d.client_secret.size() < 16) return fail(Errc::invalid_argument, "oauth-clients.json: weak or empty client credentials");
      clients.push_back(std::move(d));
    }
  } catch (const std::exception& e) {
    return fail(Errc::parse, std::string("oauth-clients.json: ") + e.what());
  }
  return std::unique_ptr<DevIssuer>(new DevIssuer(std::move(*key), std::move(clients), std::move(issuer)));
}

Json DevIssuer::jwks() const {
  return Json{{"keys", Json::array({Json{{"kty", "OKP"},
                                         {"crv", "Ed25519"},
                                         {"x", base64url_encode(key_.public_key())},
                                         {"kid", kDevKid},
                                         {"alg", "EdDSA"},
                                         {"use", "sig"}}})}};
}

DevIssuer::Answer DevIssuer::token(std::string_view authorization, std::string_view form_body, TimePoint now) const {
  auto form = parse_form(form_body);
  std::string id = form["client_id"], secret = form["client_secret"];
  constexpr std::string_view kBasic = "Basic ";
  if (authorization.substr(0, kBasic.size()) == kBasic) {
    auto raw = base64_decode(authorization.substr(kBasic.size()));
    if (raw) {
      std::string creds(raw->begin(), raw->end());
      auto colon = creds.find(':');
      if (colon != std::string::npos) {
        id = percent_decode(creds.substr(0, colon));
        secret = percent_decode(creds.substr(colon + 1));
      }
    }
  }
  if (form["grant_type"] != "client_credentials") {
    return oauth_error(400, "unsupported_grant_type", "only client_credentials is supported");
  }
  const DevClient* client = nullptr;
  for (const auto& c : clients_) {
    // Compare digests so neither length nor content leaks through timing.
    bool id_ok = constant_time_equal(sha256(c.client_id), sha256(id));
    bool secret_ok = constant_time_equal(sha256(c.client_secret), sha256(secret));
    if (id_ok && secret_ok) client = &c;
  }
  if (!client) return oauth_error(401, "invalid_client", "unknown client or wrong secret");
  std::vector<std::string> scopes = client->scopes;
  if (auto it = form.find("scope"); it != form.end() && !it->second.empty()) {
    scopes.clear();
    std::size_t i = 0;
    const auto& s = it->second;
    while (i < s.size()) {
      auto sp = s.find(' ', i);
      if (sp == std::string::npos) sp = s.size();
      auto one = s.substr(i, sp - i);
      if (!one.empty()) {
        if (std::find(client->scopes.begin(), client->scopes.end(), one) == client->scopes.end()) {
          return oauth_error(400, "invalid_scope", "scope \"" + one + "\" is not granted to this client");
        }
        scopes.push_back(one);
      }
      i = sp + 1;
    }
  }
  std::string scope_text;
  for (const auto& s : scopes) scope_text += (scope_text.empty() ? "" : " ") + s;
  const auto iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  Json claims{{"iss", issuer_},         {"sub", client->client_id}, {"client_id", client->client_id},
              {"aud", kDevAudience},    {"iat", iat},               {"exp", iat + kTokenLifetimeS},
              {"jti", hex_encode(random_bytes(16))}, {"scope", scope_text}, {"roles", client->roles}};
  if (auto it = form.find("authorization_details"); it != form.end()) {
    auto details = parse_json_strict(it->second);
    if (!details || !details->is_array()) return oauth_error(400, "invalid_authorization_details", "must be a JSON array");
    claims["authorization_details"] = *details;
  }
  Json header{{"alg", "EdDSA"}, {"typ", "at+jwt"}, {"kid", kDevKid}};
  std::string signing_input = base64url_encode(as_bytes(header.dump())) + "." + base64url_encode(as_bytes(claims.dump()));
  auto sig = key_.sign(as_bytes(signing_input));
  return {200, Json{{"access_token", signing_input + "." + base64url_encode(sig)},
                    {"token_type", "Bearer"},
                    {"expires_in", kTokenLifetimeS},
                    {"scope", scope_text}}};
}

}  // namespace delegate::controlplane
