// Network checks of `delegate-agent doctor`: TLS 1.3 reachability and trust of the
// control plane and of each OAuth issuer's JWKS URI, and the clock against the control
// plane's Date header. Same TLS rules as the agent's own client (TLS 1.3 minimum, peer
// and host name always verified, https only, no redirects), with short timeouts.
#include <curl/curl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>

#include <delegate/agent/doctor.hpp>
#include <delegate/agent/proxy.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/strict.hpp>

namespace delegate::agent {
namespace {

struct Probe {
  bool transport_ok = false;
  bool trust_failure = false;
  std::string error;
  long status = 0;
  std::string date;  // the Date header, if any
  std::string body;  // at most kMaxBody bytes
  std::time_t received = 0;
  std::string route;  // "direct" or "via proxy ..."
};

constexpr std::size_t kMaxBody = 1u << 20;

std::size_t on_body(char* p, std::size_t size, std::size_t n, void* ud) {
  auto* body = static_cast<std::string*>(ud);
  const std::size_t len = size * n;
  if (body->size() + len > kMaxBody) return 0;  // aborts the transfer: a JWKS is small
  body->append(p, len);
  return len;
}

std::size_t on_header(char* p, std::size_t size, std::size_t n, void* ud) {
  auto* date = static_cast<std::string*>(ud);
  const std::size_t len = size * n;
  std::string_view line(p, len);
  if (line.size() > 5 && (line.substr(0, 5) == "Date:" || line.substr(0, 5) == "date:")) {
    std::string v(line.substr(5));
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.pop_back();
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    *date = v;
  }
  return len;
}

bool is_trust_failure(CURLcode rc) {
  switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ISSUER_ERROR:
      return true;
    default:
      return false;
  }
}

// Takes the route the agent itself would take (proxy.hpp), so that a check passes only
// when the agent's own connection would work.
Probe get(const std::string& url, const std::filesystem::path& ca_file, const ProxySettings& proxy,
          const DoctorOptions& o) {
  Probe p;
  CurlRoute route(proxy, url, o.connect_timeout, nullptr);
  p.route = route.describe();
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    p.error = "curl_easy_init failed";
    return p;
  }
  CURL* c = curl.get();
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_3));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(o.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT, static_cast<long>(o.request_timeout.count()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &p.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &p.date);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "delegate-agent-doctor/" DELEGATE_VERSION);
  route.apply(c);
  const CURLcode rc = curl_easy_perform(c);
  p.received = std::time(nullptr);
  if (rc != CURLE_OK) {
    p.error = !route.tunnel_error().empty() ? route.tunnel_error() : errbuf[0] ? errbuf : curl_easy_strerror(rc);
    p.trust_failure = is_trust_failure(rc);
    return p;
  }
  p.transport_ok = true;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &p.status);
  return p;
}

std::string trust_source(const std::filesystem::path& ca_file) {
  return ca_file.empty() ? "the system trust store" : "CA file " + ca_file.string();
}

// The CA bundle must hold at least one certificate OpenSSL can read; a key, an empty
// file or a DER file would otherwise only show up as an opaque handshake failure.
DoctorCheck ca_file_check(const std::string& name, const std::filesystem::path& ca_file) {
  DoctorCheck c{name, false, ""};
  std::unique_ptr<FILE, decltype(&std::fclose)> f(std::fopen(ca_file.c_str(), "r"), std::fclose);
  if (!f) {
    c.detail = ca_file.string() + " cannot be read: " + std::strerror(errno) + "; make it readable by the agent";
    return c;
  }
  int certs = 0;
  while (X509* x = PEM_read_X509(f.get(), nullptr, nullptr, nullptr)) {
    X509_free(x);
    ++certs;
  }
  if (certs == 0) {
    c.detail = ca_file.string() + " holds no PEM certificate; put the PEM CA certificate(s) that issued the server's "
               "certificate there";
    return c;
  }
  c.ok = true;
  c.detail = ca_file.string() + ": " + std::to_string(certs) + " certificate(s)";
  return c;
}

std::string transport_advice(const Probe& p, const std::filesystem::path& ca_file) {
  if (p.trust_failure) {
    return "TLS 1.3 handshake or certificate verification failed (" + p.error + "); check that " +
           trust_source(ca_file) + " holds the CA that issued the server's certificate, that the certificate names "
           "this host, and that the server offers TLS 1.3";
  }
  return "unreachable " + p.route + " (" + p.error +
         "); check the URL, DNS, firewalls, and the proxy settings (control_plane.proxy, HTTPS_PROXY, NO_PROXY)";
}

}  // namespace

void doctor_network_checks(const Config& config, const DoctorOptions& options, std::vector<DoctorCheck>& out) {
  const auto& cp = config.control_plane;
  if (!cp.ca_file.empty()) out.push_back(ca_file_check("control plane CA", cp.ca_file));
  const Probe p = get(cp.url + "/healthz", cp.ca_file, cp.proxy_settings, options);
  if (!p.transport_ok) {
    out.push_back({"control plane TLS", false, cp.url + ": " + transport_advice(p, cp.ca_file)});
    out.push_back({"clock skew", false, "not measured: the control plane is unreachable"});
  } else if (p.status != 200) {
    out.push_back({"control plane TLS", false,
                   cp.url + "/healthz answered HTTP " + std::to_string(p.status) +
                       " over a trusted TLS 1.3 connection; check that control_plane.url names a delegate control plane"});
  } else {
    out.push_back({"control plane TLS", true,
                   cp.url + ": TLS 1.3, certificate trusted by " + trust_source(cp.ca_file) + ", /healthz 200, " + p.route});
  }
  if (p.transport_ok) {
    const std::time_t server = p.date.empty() ? -1 : curl_getdate(p.date.c_str(), nullptr);
    if (server < 0) {
      out.push_back({"clock skew", false, "the control plane sent no valid Date header; upgrade the control plane"});
    } else {
      const long long skew = static_cast<long long>(p.received) - static_cast<long long>(server);
      const long long abs = skew < 0 ? -skew : skew;
      const std::string text = std::to_string(skew) + " s against the control plane (limit auth.clock_skew_s = " +
                               std::to_string(config.auth.clock_skew_s) + " s)";
      // The Date header has one-second resolution: allow that much on top.
      if (abs <= static_cast<long long>(config.auth.clock_skew_s) + 1) {
        out.push_back({"clock skew", true, text});
      } else {
        out.push_back({"clock skew", false,
                       text + "; tokens would be judged against the wrong time. Synchronise this host's clock "
                              "(systemd-timesyncd, chrony)"});
      }
    }
  }

  for (std::size_t i = 0; i < config.auth.oauth.size(); ++i) {
    const auto& iss = config.auth.oauth[i];
    const std::string name = "jwks " + iss.issuer;
    if (iss.jwks_uri.empty()) {
      auto text = read_file(iss.jwks_file, kMaxBody);
      auto doc = text ? parse_json_strict(*text) : Result<Json>(std::unexpected(text.error()));
      if (!doc || !doc->is_object() || !doc->contains("keys") || !(*doc)["keys"].is_array()) {
        out.push_back({name, false,
                       iss.jwks_file.string() + " is not a readable JWK set (" +
                           (doc ? std::string("no \"keys\" array") : doc.error().message) +
                           "); put the issuer's JWK set there"});
      } else {
        out.push_back({name, true,
                       "keys from the file " + iss.jwks_file.string() + ": " + std::to_string((*doc)["keys"].size()) +
                           " key(s)"});
      }
      continue;
    }
    if (!iss.ca_file.empty()) {
      auto ca = ca_file_check(name + " CA", iss.ca_file);
      if (!ca.ok) {
        out.push_back(std::move(ca));
        continue;
      }
    }
    const Probe j = get(iss.jwks_uri, iss.ca_file, cp.proxy_settings, options);
    if (!j.transport_ok) {
      out.push_back({name, false, iss.jwks_uri + ": " + transport_advice(j, iss.ca_file)});
      continue;
    }
    if (j.status != 200) {
      out.push_back({name, false, iss.jwks_uri + " answered HTTP " + std::to_string(j.status) + "; check jwks_uri"});
      continue;
    }
    auto doc = parse_json_strict(j.body);
    if (!doc || !doc->is_object() || !doc->contains("keys") || !(*doc)["keys"].is_array()) {
      out.push_back({name, false, iss.jwks_uri + " is not a JWK set (a JSON object with a \"keys\" array); check jwks_uri"});
      continue;
    }
    out.push_back({name, true,
                   iss.jwks_uri + ": TLS 1.3, trusted by " + trust_source(iss.ca_file) + ", " +
                       std::to_string((*doc)["keys"].size()) + " key(s), " + j.route});
  }
}

}  // namespace delegate::agent
