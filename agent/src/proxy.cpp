// Proxy settings: the proxy URL, NO_PROXY lists and which of the configuration keys and
// environment variables apply (the rules are in proxy.hpp and docs/configuration.md).
#include <delegate/agent/proxy.hpp>

#include <algorithm>

namespace delegate::agent {
namespace {

bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> percent_decode(std::string_view in, std::string_view where) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    const int hi = i + 2 < in.size() ? hex_value(in[i + 1]) : -1;
    const int lo = i + 2 < in.size() ? hex_value(in[i + 2]) : -1;
    if (hi < 0 || lo < 0) return fail(Errc::invalid_argument, std::string(where) + ": malformed %-escape in the credentials");
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  if (std::any_of(out.begin(), out.end(), is_control)) {
    return fail(Errc::invalid_argument, std::string(where) + ": control characters in the credentials");
  }
  return out;
}

std::string err_where(std::string_view where, std::string_view what) { return std::string(where) + ": " + std::string(what); }

// "[v6]" or "[v6]:port" or "name:port" or "v4:port" or a bare name, v4 or v6 literal.
Result<NoProxyEntry> parse_entry(std::string text, std::string_view where) {
  const auto bad = [&](std::string_view why) {
    return fail(Errc::invalid_argument, std::string(where) + ": entry \"" + text + "\" " + std::string(why));
  };
  std::transform(text.begin(), text.end(), text.begin(), lower);
  NoProxyEntry e;
  if (text == "*") return e;
  if (text.find('/') != std::string::npos) {
    auto cidr = egress::parse_cidr(text);
    if (!cidr) return bad("is not a CIDR range (" + cidr.error().message + ")");
    e.kind = NoProxyEntry::Kind::address;
    e.range = *cidr;
    return e;
  }
  std::string host = text;
  std::string_view port_text;
  if (host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string::npos) return bad("has no closing ']'");
    if (close + 1 < host.size()) {
      if (host[close + 1] != ':') return bad("has text after ']'");
      port_text = std::string_view(text).substr(close + 2);
      if (port_text.empty()) return bad("has an empty port");
    }
    host = host.substr(1, close - 1);
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    const auto colon = host.find(':');
    port_text = std::string_view(text).substr(colon + 1);
    if (port_text.empty()) return bad("has an empty port");
    host = host.substr(0, colon);
  }
  if (!port_text.empty()) {
    // Port syntax is the egress parser's: decimal, 1..65535, no leading zeros.
    auto hp = egress::parse_host_port("x:" + std::string(port_text));
    if (!hp) return bad("has an invalid port (" + hp.error().message + ")");
    e.port = hp->port;
  }
  if (auto ip = egress::parse_ip(host)) {
    e.kind = NoProxyEntry::Kind::address;
    e.range = egress::Cidr{*ip, ip->family == AF_INET ? 32u : 128u};
    return e;
  }
  if (host.rfind("*.", 0) == 0) host.erase(0, 2);
  else if (host.rfind('.', 0) == 0) host.erase(0, 1);
  if (!host.empty() && host.back() == '.') host.pop_back();
  auto name = egress::parse_host_port(host + ":1");
  if (!name || name->host.front() == '[') return bad("is not a host name, address, CIDR range or *");
  e.kind = NoProxyEntry::Kind::domain;
  e.domain = name->host;
  return e;
}

std::string env_value(const std::map<std::string, std::string>& env, const char* name) {
  auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

}  // namespace

std::string ProxyUrl::display() const { return "http://" + egress::to_string(address); }

Result<ProxyUrl> parse_proxy_url(std::string_view text, std::string_view where) {
  if (text.empty()) return fail(Errc::invalid_argument, err_where(where, "empty proxy URL"));
  if (std::any_of(text.begin(), text.end(), [](char c) { return is_control(c) || c == ' '; })) {
    return fail(Errc::invalid_argument, err_where(where, "control characters or spaces in the proxy URL"));
  }
  const auto sep = text.find("://");
  if (sep == std::string_view::npos) {
    return fail(Errc::invalid_argument, err_where(where, "the proxy URL must start with http:// (for example http://proxy.example:3128)"));
  }
  std::string scheme(text.substr(0, sep));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), lower);
  if (scheme != "http") {
    const bool printable = scheme.size() <= 16 && std::all_of(scheme.begin(), scheme.end(), [](char c) {
                             return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
                           });
    return fail(Errc::invalid_argument,
                err_where(where, "proxy scheme " + (printable ? "\"" + scheme + "\"" : std::string("given")) +
                                     " is not supported: only http:// proxies (TLS to the server runs inside the "
                                     "CONNECT tunnel)"));
  }
  std::string_view rest = text.substr(sep + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != std::string_view::npos) {
    return fail(Errc::invalid_argument, err_where(where, "the proxy URL must not have a path, query or fragment"));
  }
  ProxyUrl out;
  out.source = std::string(where);
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view info = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = info.find(':');
    auto user = percent_decode(info.substr(0, colon), where);
    if (!user) return std::unexpected(user.error());
    auto pass = percent_decode(colon == std::string_view::npos ? std::string_view() : info.substr(colon + 1), where);
    if (!pass) return std::unexpected(pass.error());
    if (user->empty()) return fail(Errc::invalid_argument, err_where(where, "the proxy URL has credentials without a user name"));
    if (user->find(':') != std::string::npos) {
      return fail(Errc::invalid_argument, err_where(where, "the proxy user name must not contain ':' (encode it as %3A)"));
    }
    out.user = std::move(*user);
    out.password = std::move(*pass);
    out.has_credentials = true;
  }
  const bool bracketed = !rest.empty() && rest.front() == '[';
  const auto close = bracketed ? rest.find(']') : std::string_view::npos;
  const auto colon = rest.find(':', bracketed && close != std::string_view::npos ? close : 0);
  if (colon == std::string_view::npos) {
    return fail(Errc::invalid_argument, err_where(where, "the proxy URL must name a port (http://host:port)"));
  }
  auto hp = egress::parse_host_port(rest);
  if (!hp) return fail(Errc::invalid_argument, err_where(where, "proxy host and port: " + hp.error().message));
  out.address = *hp;
  return out;
}

Result<std::vector<NoProxyEntry>> parse_no_proxy(std::string_view list, std::string_view where) {
  std::vector<NoProxyEntry> out;
  std::size_t i = 0;
  while (i < list.size()) {
    const auto j = list.find_first_of(", \t", i);
    const std::string_view item = list.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i);
    if (!item.empty()) {
      if (std::any_of(item.begin(), item.end(), is_control)) {
        return fail(Errc::invalid_argument, err_where(where, "control characters in the list"));
      }
      auto e = parse_entry(std::string(item), where);
      if (!e) return std::unexpected(e.error());
      out.push_back(std::move(*e));
    }
    if (j == std::string_view::npos) break;
    i = j + 1;
  }
  return out;
}

bool no_proxy_matches(const std::vector<NoProxyEntry>& entries, const egress::HostPort& target) {
  const auto ip = egress::parse_ip(egress::bare_host(target));
  for (const auto& e : entries) {
    if (e.port != 0 && e.port != target.port) continue;
    switch (e.kind) {
      case NoProxyEntry::Kind::any:
        return true;
      case NoProxyEntry::Kind::address:
        if (ip && e.range.contains(*ip)) return true;
        break;
      case NoProxyEntry::Kind::domain: {
        if (ip) break;
        const std::string& h = target.host;
        if (h == e.domain) return true;
        if (h.size() > e.domain.size() && h.ends_with(e.domain) && h[h.size() - e.domain.size() - 1] == '.') return true;
        break;
      }
    }
  }
  return false;
}

const ProxyUrl* ProxySettings::route(const egress::HostPort& target) const {
  if (!proxy || no_proxy_matches(no_proxy, target)) return nullptr;
  return &*proxy;
}

Result<ProxySettings> resolve_proxy_settings(const std::string& proxy_key,
                                             const std::optional<std::vector<std::string>>& no_proxy_key,
                                             const std::map<std::string, std::string>& env) {
  ProxySettings s;
  std::string list;
  std::string list_where;
  if (no_proxy_key) {
    for (const auto& item : *no_proxy_key) list += item + ",";
    list_where = "control_plane.no_proxy";
    // Checked even when no proxy applies: a wrong key is an error wherever it is.
    auto entries = parse_no_proxy(list, list_where);
    if (!entries) return std::unexpected(entries.error());
  }
  if (proxy_key == "none") return s;
  if (!proxy_key.empty()) {
    auto p = parse_proxy_url(proxy_key, "control_plane.proxy");
    if (!p) return std::unexpected(p.error());
    s.proxy = std::move(*p);
  } else {
    // Lower case first, as libcurl and wget read them.
    const char* name = !env_value(env, "https_proxy").empty() ? "https_proxy" : "HTTPS_PROXY";
    const std::string value = env_value(env, name);
    if (value.empty()) return s;
    auto p = parse_proxy_url(value, std::string("environment ") + name);
    if (!p) return std::unexpected(p.error());
    s.proxy = std::move(*p);
    if (!no_proxy_key) {
      const char* np = !env_value(env, "no_proxy").empty() ? "no_proxy" : "NO_PROXY";
      list = env_value(env, np);
      list_where = std::string("environment ") + np;
    }
  }
  auto entries = parse_no_proxy(list, list_where);
  if (!entries) return std::unexpected(entries.error());
  s.no_proxy = std::move(*entries);
  return s;
}

Result<egress::HostPort> https_target(std::string_view url) {
  if (url.size() < 8 || url.substr(0, 8) != "https://") return fail(Errc::invalid_argument, "not an https:// URL");
  std::string_view authority = url.substr(8);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) return fail(Errc::invalid_argument, "URL must not carry credentials");
  std::string hp(authority);
  const auto close = hp.rfind(']');
  const auto colon = hp.rfind(':');
  if (colon == std::string::npos || (close != std::string::npos && colon < close)) hp += ":443";
  // "host.example.:443" names the same host as "host.example:443".
  if (const auto c = hp.rfind(':'); c > 0 && hp[c - 1] == '.') hp.erase(c - 1, 1);
  auto out = egress::parse_host_port(hp);
  if (!out) return fail(Errc::invalid_argument, "URL host: " + out.error().message);
  return out;
}

}  // namespace delegate::agent
