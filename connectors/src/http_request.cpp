#include <delegate/connectors/http_request.hpp>

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <array>
#include <cctype>
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include <delegate/common/fs.hpp>

namespace delegate::connectors {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxSpecBytes = 4u << 20;
constexpr std::size_t kMaxHeaderValue = 1024;
constexpr std::array<std::string_view, 4> kKeptHeaders{"content-type", "location", "retry-after", "x-request-id"};

struct Response {
  long status = 0;
  std::string body;
  bool overflow = false;
  Json headers = Json::object();
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  const std::size_t len = size * n;
  if (r->body.size() + len > kMaxResponseBody) {
    r->overflow = true;
    return 0;  // aborts the transfer: the cap is a hard limit, not a truncation
  }
  r->body.append(data, len);
  return len;
}

// Keeps the selected headers of the last response only (a 100 Continue or a proxy's
// CONNECT answer precedes the real one).
std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  const std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    r->headers = Json::object();
    return size * n;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name(line.substr(0, colon));
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (std::find(kKeptHeaders.begin(), kKeptHeaders.end(), name) == kKeptHeaders.end()) return size * n;
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.remove_suffix(1);
  r->headers[name] = std::string(value.substr(0, kMaxHeaderValue));
  return size * n;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

// The system bundle curl would use by default, followed by the agent's extra anchors:
// CURLOPT_CAINFO_BLOB replaces the default file, so both go into one blob.
Result<std::string> trust_bundle(CURL* c, const std::string& extra) {
  char* path = nullptr;
  curl_easy_getinfo(c, CURLINFO_CAINFO, &path);
  std::string bundle;
  if (path != nullptr) {
    auto text = read_file(path, 16u << 20);
    if (text) bundle = std::move(*text);
  }
  if (!bundle.empty() && bundle.back() != '\n') bundle += '\n';
  return bundle + extra;
}

struct Request {
  std::string method;
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::string> body;
};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

Result<Response> perform_once(const Request& req, const std::string& ca_blob, Clock::time_point deadline,
                              std::string& redirect_url) {
  std::unique_ptr<CURL, CurlDeleter> c(curl_easy_init());
  if (!c) return fail(Errc::internal, "cannot initialise libcurl");
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return fail(Errc::timeout, "the step's timeout passed");
  Response resp;
  char errbuf[CURL_ERROR_SIZE] = {0};
  CURL* h = c.get();
  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_3));
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  // Redirects are judged here against the step's allowlist, never followed by curl.
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(left.count()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &resp);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "delegate-agent/" DELEGATE_VERSION);
  // A compressed body could expand past the cap before it is counted: ask for none.
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, nullptr);
  std::string blob;
  if (!ca_blob.empty()) {
    auto b = trust_bundle(h, ca_blob);
    if (!b) return std::unexpected(b.error());
    blob = std::move(*b);
    curl_blob cb{blob.data(), blob.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &cb);
  }
  std::unique_ptr<curl_slist, CurlDeleter> headers;
  for (const auto& [name, value] : req.headers) {
    const std::string line = name + ": " + value;
    curl_slist* next = curl_slist_append(headers.get(), line.c_str());
    if (next == nullptr) return fail(Errc::internal, "out of memory");
    (void)headers.release();
    headers.reset(next);
  }
  if (req.body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body->data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body->size()));
  }
  if (req.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (req.method == "GET" && !req.body) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else if (req.method != "POST") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  const CURLcode rc = curl_easy_perform(h);
  if (resp.overflow) return fail(Errc::too_large, "response body larger than 1 MiB");
  if (rc != CURLE_OK) {
    return fail(Errc::io, std::string("request failed: ") + (errbuf[0] != 0 ? errbuf : curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
  char* loc = nullptr;
  curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc);
  redirect_url = loc != nullptr ? loc : "";
  return resp;
}

std::chrono::milliseconds backoff(int attempt, const Json& headers) {
  // Retry-After in seconds (an HTTP date is not honoured: the default backoff applies),
  // bounded so that one answer cannot park the step.
  if (headers.contains("retry-after")) {
    const auto& v = headers["retry-after"].get_ref<const std::string&>();
    if (!v.empty() && v.size() <= 3 && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::chrono::seconds(std::min(std::stoi(v), 30));
    }
  }
  return std::chrono::milliseconds(std::min(250 << attempt, 8000));
}

Json outputs_of(const Json& spec, const Json& doc, Json& errors) {
  Json out = Json::object();
  if (!spec.contains("outputs")) return out;
  for (const auto& [name, ptr] : spec["outputs"].items()) {
    if (doc.is_discarded()) {
      errors[name] = "the response body is not JSON";
      continue;
    }
    try {
      const auto& v = doc.at(Json::json_pointer(ptr.get<std::string>()));
      if (v.is_string() || v.is_boolean() || v.is_number_integer()) {
        out[name] = v;
      } else {
        errors[name] = "the value at " + ptr.get<std::string>() + " is not a string, integer or boolean";
      }
    } catch (const Json::exception&) {
      errors[name] = "the response body has no value at " + ptr.get<std::string>();
    }
  }
  return out;
}

Json run(const Json& spec) {
  Request req;
  req.method = spec.at("method").get<std::string>();
  req.url = spec.at("url").get<std::string>();
  for (const auto& h : spec.at("headers")) req.headers.emplace_back(h.at(0).get<std::string>(), h.at(1).get<std::string>());
  // Headers that carry the step's credential: they go only to the host:port the step
  // names in its URL, never along a redirect to another (even an allowed) one.
  std::vector<std::string> credential_headers;
  for (const auto& n : spec.value("credential_headers", Json::array())) credential_headers.push_back(n.get<std::string>());
  const std::string origin = https_authority(req.url);
  const bool secret_body = spec.value("body_has_secret", false);
  if (spec.contains("body") && spec["body"].is_string()) req.body = spec["body"].get<std::string>();
  const auto deadline = Clock::now() + std::chrono::milliseconds(spec.at("timeout_ms").get<std::int64_t>());
  const std::string ca = spec.value("ca_pem", std::string());
  std::vector<std::string> allow;
  for (const auto& a : spec.value("allow", Json::array())) allow.push_back(a.get<std::string>());
  int attempts_max = 1;
  std::vector<long> retry_on;
  if (spec.contains("retry")) {
    attempts_max = std::clamp(spec["retry"].value("attempts", 1), 1, kMaxAttempts);
    for (const auto& s : spec["retry"].value("on_status", Json::array())) retry_on.push_back(s.get<long>());
  }
  const std::size_t preview = spec.value("preview_bytes", std::size_t{4096});
  const std::size_t raw_max = spec.value("raw_body_max", std::size_t{0});

  Json redirects = Json::array();
  int attempt = 0;
  Response resp;
  for (;;) {
    ++attempt;
    std::string location;
    auto r = perform_once(req, ca, deadline, location);
    if (!r) return Json{{"error", r.error().message}, {"attempts", attempt}, {"redirects", redirects}};
    resp = std::move(*r);
    if (resp.status >= 300 && resp.status < 400 && !location.empty()) {
      const std::string target = https_authority(location);
      if (target.empty() || std::find(allow.begin(), allow.end(), target) == allow.end()) {
        return Json{{"error", "redirect to " + (target.empty() ? std::string("a non-https URL") : target) +
                                  ", which is not in the step's egress allowlist"},
                    {"status", resp.status},
                    {"location", location},
                    {"attempts", attempt},
                    {"redirects", redirects}};
      }
      if (redirects.size() >= static_cast<std::size_t>(kMaxRedirects)) {
        return Json{{"error", "more than 5 redirects"}, {"status", resp.status}, {"attempts", attempt},
                    {"redirects", redirects}};
      }
      // A body that holds a secret is not sent elsewhere: stripping it would change the request.
      if (target != origin && secret_body && req.body && resp.status != 303) {
        return Json{{"error", "redirect to " + target + " would carry a secret in the request body"},
                    {"status", resp.status},
                    {"attempts", attempt},
                    {"redirects", redirects}};
      }
      redirects.push_back(location);
      req.url = location;
      if (target != origin) {
        std::erase_if(req.headers, [&](const auto& h) {
          return std::any_of(credential_headers.begin(), credential_headers.end(),
                             [&](const std::string& c) { return iequals(c, h.first); });
        });
      }
      // 303 means "GET the answer elsewhere"; other redirects repeat the request as it was.
      if (resp.status == 303) {
        req.method = "GET";
        req.body.reset();
      }
      --attempt;  // a redirect is part of the same attempt
      continue;
    }
    const bool retry = std::find(retry_on.begin(), retry_on.end(), resp.status) != retry_on.end();
    if (!retry || attempt >= attempts_max) break;
    const auto wait = backoff(attempt, resp.headers);
    if (Clock::now() + wait >= deadline) break;  // report the last answer rather than time out
    std::this_thread::sleep_for(wait);
  }

  Json result{{"status", resp.status}, {"headers", resp.headers}, {"body_bytes", resp.body.size()},
              {"attempts", attempt}, {"redirects", redirects}, {"url", req.url}};
  if (raw_max > 0) {
    if (resp.body.size() > raw_max) return Json{{"error", "response body larger than " + std::to_string(raw_max) + " bytes"}, {"status", resp.status}};
    result["body_raw"] = resp.body;
    return result;
  }
  Json doc = Json::value_t::discarded;
  if (!resp.body.empty()) {
    auto parsed = parse_json_strict(resp.body, JsonLimits{.max_bytes = kMaxResponseBody, .max_depth = 64});
    if (parsed) doc = std::move(*parsed);
  }
  result["body_json"] = !doc.is_discarded();
  // Invalid UTF-8 becomes U+FFFD when the line is printed (dump with replace).
  result["body_preview"] = resp.body.substr(0, preview);
  Json errors = Json::object();
  result["outputs"] = outputs_of(spec, doc, errors);
  if (!errors.empty()) result["output_errors"] = std::move(errors);
  return result;
}

}  // namespace

std::string https_authority(std::string_view url) {
  std::unique_ptr<CURLU, CurlDeleter> u(curl_url());
  if (!u) return "";
  const std::string s(url);
  if (curl_url_set(u.get(), CURLUPART_URL, s.c_str(), 0) != CURLUE_OK) return "";
  char* scheme = nullptr;
  char* host = nullptr;
  char* port = nullptr;
  std::string out;
  if (curl_url_get(u.get(), CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK && scheme != nullptr &&
      std::string_view(scheme) == "https" && curl_url_get(u.get(), CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(u.get(), CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
    std::string h = host;
    for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out = h + ":" + port;
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  return out;
}

Json perform_http_request(const Json& spec) {
  try {
    return run(spec);
  } catch (const std::exception& e) {
    return Json{{"error", std::string("malformed request spec: ") + e.what()}};
  }
}

int http_request_main() {
  std::string in;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
    if (in.size() > kMaxSpecBytes) {
      std::cerr << "http-request: request spec larger than 4 MiB\n";
      return 2;
    }
  }
  auto spec = parse_json_strict(in, JsonLimits{.max_bytes = kMaxSpecBytes, .max_depth = 8});
  if (!spec || !spec->is_object()) {
    std::cerr << "http-request: unreadable request spec\n";
    return 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const Json result = perform_http_request(*spec);
  std::cout << result.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n" << std::flush;
  return 0;
}

}  // namespace delegate::connectors
