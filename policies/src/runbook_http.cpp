// The http step (uses: http) of a runbook: parsing with strict keys, and the
// substitution of references into its URL, header values and body (docs/connectors.md).
#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>

#include <delegate/common/uri.hpp>
#include <delegate/policies/runbook.hpp>

#include "runbook_detail.hpp"
#include "yaml_util.hpp"

namespace delegate::policies {
namespace {

using detail::yfail;
using detail::yindex;
using detail::ykey;

constexpr std::size_t kMaxHeaders = 32;
constexpr std::size_t kMaxUrl = 2048;
constexpr std::size_t kMaxBodyDepth = 16;
constexpr std::size_t kMaxBodyNodes = 1024;
constexpr std::size_t kMaxStatuses = 32;
constexpr std::string_view kParamOpen = "${params.";
constexpr std::string_view kStepOpen = "${steps.";

bool has_any_ref(std::string_view s) { return s.find("${") != std::string_view::npos; }

bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool valid_header_name(std::string_view s) { return !s.empty() && s.size() <= 128 && std::all_of(s.begin(), s.end(), is_tchar); }

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "https://HOST[:PORT]" with a literal host (DNS name, IPv4 or [IPv6]); returns
// "host:port" and sets `rest` to what follows (path, query). References, user info,
// fragments and anything but https are refused: a caller's value must never choose
// where the request goes, and the URL is recorded.
std::string parse_https_url(const std::string& url, const std::string& path, std::string& rest) {
  if (url.size() > kMaxUrl) yfail(path, "longer than 2048 characters");
  if (url.find(kSecretRefOpen) != std::string::npos) {
    yfail(path, "${secrets.…} cannot be part of a URL (URLs are recorded); use a header or auth");
  }
  if (!url.starts_with("https://")) yfail(path, "must be an https:// URL");
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) yfail(path, "must not contain spaces or control characters");
  }
  if (url.find('#') != std::string::npos) yfail(path, "must not contain a fragment");
  const std::size_t start = 8;
  const std::size_t end = url.find_first_of("/?", start);
  const std::string authority = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  rest = end == std::string::npos ? "" : url.substr(end);
  if (has_any_ref(authority)) {
    yfail(path, "a reference cannot be part of the URL's scheme, host or port (only its path and query)");
  }
  if (authority.find('@') != std::string::npos) yfail(path, "must not carry user information");
  std::string host = authority;
  std::string port = "443";
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) yfail(path, "has an unterminated IPv6 address");
    host = authority.substr(0, close + 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') yfail(path, "has a malformed host");
      port = authority.substr(close + 2);
    }
    if (!std::all_of(host.begin() + 1, host.end() - 1, [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.'; })) {
      yfail(path, "has a malformed IPv6 address");
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) yfail(path, "missing host");
  if (host.front() != '[') {
    host = lower(host);
    if (host.size() > 253 || !std::all_of(host.begin(), host.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
        })) {
      yfail(path, "has a malformed host");
    }
  }
  int p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p < 1 || p > 65535) {
    yfail(path, "has a malformed port");
  }
  return host + ":" + std::to_string(p);
}

std::vector<int> parse_statuses(const YAML::Node& n, const std::string& path) {
  if (!n.IsSequence() || n.size() == 0 || n.size() > kMaxStatuses) yfail(path, "must be a list of 1..32 HTTP statuses");
  std::vector<int> out;
  for (std::size_t i = 0; i < n.size(); ++i) {
    out.push_back(static_cast<int>(detail::yint_range(n[i], yindex(path, i), 100, 599)));
  }
  return out;
}

// A YAML value as JSON. Quoted scalars are strings; plain ones keep their YAML 1.2 core
// type (true/false, null, integers, decimals), so `count: 3` is the number 3.
Json to_json(const YAML::Node& n, const std::string& path, std::size_t depth, std::size_t& nodes,
             const Runbook& rb, Step& st) {
  if (depth > kMaxBodyDepth) yfail(path, "nested deeper than 16 levels");
  if (++nodes > kMaxBodyNodes) yfail(path, "more than 1024 values");
  if (n.IsNull()) return nullptr;
  if (n.IsSequence()) {
    Json a = Json::array();
    for (std::size_t i = 0; i < n.size(); ++i) a.push_back(to_json(n[i], yindex(path, i), depth + 1, nodes, rb, st));
    return a;
  }
  if (n.IsMap()) {
    Json o = Json::object();
    for (const auto& key : detail::ymap_keys(n, path)) {
      if (has_any_ref(key)) yfail(ykey(path, key), "a key cannot hold a reference");
      o[key] = to_json(n[key], ykey(path, key), depth + 1, nodes, rb, st);
    }
    return o;
  }
  const std::string& s = n.Scalar();
  if (n.Tag() != "!") {
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    if (s == "null" || s == "Null" || s == "NULL" || s == "~") return nullptr;
    std::int64_t i = 0;
    if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), i); !s.empty() && ec == std::errc() && p == s.data() + s.size()) {
      return i;
    }
  }
  detail::check_template(rb, st, s, path);
  return s;
}

HttpAuth parse_auth(const YAML::Node& n, const std::string& path, Step& st) {
  if (!n.IsMap() || !n["type"]) yfail(path, "must be a mapping with a type");
  const std::string type = detail::ystring(n["type"], ykey(path, "type"));
  HttpAuth a;
  auto secret_name = [&](const char* key) {
    if (!n[key]) yfail(ykey(path, key), "missing");
    std::string name = detail::ystring(n[key], ykey(path, key));
    if (!valid_secret_name(name)) yfail(ykey(path, key), "must be a secret's name ([A-Za-z_][A-Za-z0-9_]{0,63})");
    if (std::find(st.secrets.begin(), st.secrets.end(), name) == st.secrets.end()) st.secrets.push_back(name);
    return name;
  };
  auto literal = [&](const char* key) {
    if (!n[key]) yfail(ykey(path, key), "missing");
    std::string v = detail::ystring(n[key], ykey(path, key));
    if (v.empty() || v.size() > 256) yfail(ykey(path, key), "must be 1..256 characters");
    if (has_any_ref(v)) yfail(ykey(path, key), "cannot hold a reference");
    if (!std::all_of(v.begin(), v.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
      yfail(ykey(path, key), "must be printable ASCII without spaces");
    }
    return v;
  };
  if (type == "api_key") {
    detail::ycheck_keys(n, path, {"type", "header", "secret"});
    a.type = HttpAuthType::api_key;
    a.header = literal("header");
    if (!valid_header_name(a.header)) yfail(ykey(path, "header"), "is not a valid header name");
    a.secret = secret_name("secret");
  } else if (type == "bearer") {
    detail::ycheck_keys(n, path, {"type", "secret"});
    a.type = HttpAuthType::bearer;
    a.secret = secret_name("secret");
  } else if (type == "basic") {
    detail::ycheck_keys(n, path, {"type", "username", "secret"});
    a.type = HttpAuthType::basic;
    a.username = literal("username");
    if (a.username.find(':') != std::string::npos) yfail(ykey(path, "username"), "must not contain ':' (RFC 7617)");
    a.secret = secret_name("secret");
  } else if (type == "oauth2_client_credentials") {
    detail::ycheck_keys(n, path, {"type", "token_url", "client_id", "client_secret", "scopes"});
    a.type = HttpAuthType::oauth2_client_credentials;
    if (!n["token_url"]) yfail(ykey(path, "token_url"), "missing");
    a.token_url = detail::ystring(n["token_url"], ykey(path, "token_url"));
    if (a.token_url.find("${") != std::string::npos) yfail(ykey(path, "token_url"), "cannot hold a reference");
    a.client_id = literal("client_id");
    a.client_secret = secret_name("client_secret");
    if (n["scopes"]) {
      a.scopes = detail::ystring_list(n["scopes"], ykey(path, "scopes"), 32);
      for (std::size_t i = 0; i < a.scopes.size(); ++i) {
        const auto& s = a.scopes[i];
        // RFC 6749 section 3.3 scope-token: %x21 / %x23-5B / %x5D-7E
        if (s.empty() || s.size() > 256 || !std::all_of(s.begin(), s.end(), [](char c) {
              return c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
            })) {
          yfail(yindex(ykey(path, "scopes"), i), "is not a valid OAuth scope");
        }
      }
    }
  } else {
    yfail(ykey(path, "type"), "must be api_key, bearer, basic or oauth2_client_credentials");
  }
  return a;
}

// The reference starting at `pos` in `tmpl` ("${params.x}" or "${steps.S.outputs.N}"),
// or npos when the "${" there opens none.
std::size_t ref_end(std::string_view tmpl, std::size_t pos) {
  const auto rest = tmpl.substr(pos);
  if (!rest.starts_with(kParamOpen) && !rest.starts_with(kStepOpen)) return std::string_view::npos;
  const auto close = tmpl.find('}', pos);
  return close == std::string_view::npos ? std::string_view::npos : close + 1;
}


}  // namespace

namespace detail {

void parse_http_with(const YAML::Node& with, const std::string& wpath, Step& st, const Runbook& rb) {
  ycheck_keys(with, wpath, {"method", "url", "headers", "body", "expect_status", "timeout_s", "auth", "outputs", "retry"});
  HttpSpec& h = st.http;
  if (with["method"]) {
    h.method = ystring(with["method"], ykey(wpath, "method"));
    static const std::set<std::string, std::less<>> kMethods{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"};
    if (!kMethods.contains(h.method)) yfail(ykey(wpath, "method"), "must be GET, POST, PUT, PATCH, DELETE or HEAD");
  }
  if (!with["url"]) yfail(ykey(wpath, "url"), "missing");
  h.url = ystring(with["url"], ykey(wpath, "url"));
  std::string rest;
  h.authority = parse_https_url(h.url, ykey(wpath, "url"), rest);
  check_refs_in(rb, rest, ykey(wpath, "url"));
  if (with["auth"]) {
    h.auth = parse_auth(with["auth"], ykey(wpath, "auth"), st);
    if (h.auth.type == HttpAuthType::oauth2_client_credentials) {
      std::string token_rest;
      h.token_authority = parse_https_url(h.auth.token_url, ykey(ykey(wpath, "auth"), "token_url"), token_rest);
    }
  }
  if (with["headers"]) {
    const std::string hpath = ykey(wpath, "headers");
    auto names = ymap_keys(with["headers"], hpath);
    if (names.size() > kMaxHeaders) yfail(hpath, "more than 32 headers");
    std::set<std::string> seen;
    for (const auto& name : names) {
      const std::string vpath = ykey(hpath, name);
      if (!valid_header_name(name)) yfail(vpath, "is not a valid header name");
      const std::string lname = lower(name);
      if (!seen.insert(lname).second) yfail(vpath, "duplicate header (names are case-insensitive)");
      if (lname == "host" || lname == "content-length" || lname == "transfer-encoding" || lname == "connection") {
        yfail(vpath, "is set by the agent");
      }
      if (h.auth.type != HttpAuthType::none &&
          (lname == "authorization" || (h.auth.type == HttpAuthType::api_key && lname == lower(h.auth.header)))) {
        yfail(vpath, "is set by with.auth");
      }
      std::string value = ystring(with["headers"][name], vpath);
      if (value.size() > 8192) yfail(vpath, "longer than 8192 characters");
      if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
        yfail(vpath, "must not contain CR, LF or NUL");
      }
      check_template(rb, st, value, vpath);
      h.headers.emplace_back(name, std::move(value));
    }
  }
  if (with["body"]) {
    std::size_t nodes = 0;
    h.body = to_json(with["body"], ykey(wpath, "body"), 0, nodes, rb, st);
  }
  if (with["expect_status"]) h.expect_status = parse_statuses(with["expect_status"], ykey(wpath, "expect_status"));
  if (with["timeout_s"]) h.timeout_s = static_cast<std::uint32_t>(yint_range(with["timeout_s"], ykey(wpath, "timeout_s"), 1, 3600));
  if (with["retry"]) {
    const std::string rpath = ykey(wpath, "retry");
    ycheck_keys(with["retry"], rpath, {"attempts", "on_status"});
    if (!with["retry"]["attempts"]) yfail(ykey(rpath, "attempts"), "missing");
    h.retry_attempts = static_cast<std::uint32_t>(yint_range(with["retry"]["attempts"], ykey(rpath, "attempts"), 1, 5));
    if (with["retry"]["on_status"]) h.retry_on = parse_statuses(with["retry"]["on_status"], ykey(rpath, "on_status"));
    else h.retry_on = {429, 502, 503, 504};
  }
}

void check_http_step(const Step& st, const std::string& path) {
  for (const auto& [name, spec] : st.outputs) {
    if (spec.source != OutputSource::json) {
      yfail(ykey(ykey(ykey(path, "with"), "outputs"), name), "an http step's outputs are JSON Pointers into the response body");
    }
  }
  if (st.sandbox.network) return;  // the host's network: the agent's policy allowed it
  auto allowed = [&](const std::string& authority) {
    return std::find(st.sandbox.egress.begin(), st.sandbox.egress.end(), authority) != st.sandbox.egress.end();
  };
  if (!allowed(st.http.authority)) {
    yfail(ykey(ykey(path, "with"), "url"), "host " + st.http.authority + " is not in sandbox.egress");
  }
  if (!st.http.token_authority.empty() && !allowed(st.http.token_authority)) {
    yfail(ykey(ykey(ykey(path, "with"), "auth"), "token_url"), "host " + st.http.token_authority + " is not in sandbox.egress");
  }
}

}  // namespace detail

Result<std::string> substitute_url(std::string_view tmpl, const Json& params, const Json& outputs) {
  std::string out;
  std::size_t last = 0;
  for (std::size_t pos = tmpl.find("${"); pos != std::string_view::npos; pos = tmpl.find("${", last)) {
    const std::size_t end = ref_end(tmpl, pos);
    if (end == std::string_view::npos) {
      out.append(tmpl.substr(last, pos + 2 - last));
      last = pos + 2;
      continue;
    }
    out.append(tmpl.substr(last, pos - last));
    auto v = substitute(tmpl.substr(pos, end - pos), params, outputs);
    if (!v) return std::unexpected(v.error());
    // "." and ".." are dot segments: the client would resolve them and the request
    // would reach another path of the same API, with the same credential.
    if (*v == "." || *v == "..") {
      return fail(Errc::invalid_argument, "a URL value cannot be \"" + *v + "\" (a dot segment)");
    }
    out += percent_encode(*v);
    last = end;
  }
  out.append(tmpl.substr(last));
  return out;
}

Result<std::string> substitute_with_secrets(std::string_view tmpl, const Json& params, const Json& outputs,
                                            const std::map<std::string, std::string>& secrets) {
  std::string out;
  std::size_t last = 0;
  for (std::size_t pos = tmpl.find(kSecretRefOpen); pos != std::string_view::npos; pos = tmpl.find(kSecretRefOpen, last)) {
    auto piece = substitute(tmpl.substr(last, pos - last), params, outputs);
    if (!piece) return std::unexpected(piece.error());
    out += *piece;
    const std::size_t close = tmpl.find('}', pos);
    if (close == std::string_view::npos) return fail(Errc::invalid_argument, "malformed secret reference");
    const std::string name(tmpl.substr(pos + kSecretRefOpen.size(), close - pos - kSecretRefOpen.size()));
    auto it = secrets.find(name);
    if (it == secrets.end()) return fail(Errc::not_found, "secret " + name + " was not resolved");
    out += it->second;
    last = close + 1;
  }
  auto rest = substitute(tmpl.substr(last), params, outputs);
  if (!rest) return std::unexpected(rest.error());
  return out + *rest;
}

Result<Json> substitute_body(const Json& tmpl, const Json& params, const Json& outputs,
                             const std::map<std::string, std::string>& secrets) {
  if (tmpl.is_array() || tmpl.is_object()) {
    Json out = tmpl.is_array() ? Json::array() : Json::object();
    for (auto it = tmpl.begin(); it != tmpl.end(); ++it) {
      auto v = substitute_body(it.value(), params, outputs, secrets);
      if (!v) return v;
      if (tmpl.is_array()) out.push_back(std::move(*v));
      else out[it.key()] = std::move(*v);
    }
    return out;
  }
  if (!tmpl.is_string()) return tmpl;
  const auto& s = tmpl.get_ref<const std::string&>();
  // Exactly one parameter or output reference: the value keeps its type (a number stays one).
  if (s.starts_with("${") && ref_end(s, 0) == s.size()) {
    const std::string_view inner = std::string_view(s).substr(2, s.size() - 3);
    if (s.starts_with(kParamOpen)) {
      const std::string name(inner.substr(kParamOpen.size() - 2));
      if (params.is_object() && params.contains(name)) return params.at(name);
    } else {
      const auto infix = inner.find(".outputs.");
      if (infix != std::string_view::npos) {
        const std::string step(inner.substr(kStepOpen.size() - 2, infix - (kStepOpen.size() - 2)));
        const std::string name(inner.substr(infix + 9));
        if (outputs.is_object() && outputs.contains(step) && outputs.at(step).contains(name)) {
          return outputs.at(step).at(name);
        }
      }
    }
  }
  auto text = substitute_with_secrets(s, params, outputs, secrets);
  if (!text) return std::unexpected(text.error());
  return Json(std::move(*text));
}

}  // namespace delegate::policies
