// libcurl, loaded on first use instead of at exec.
//
// Debian's libcurl maps about thirty libraries (GnuTLS, nettle, p11-kit, LDAP, RTMP,
// SSH, Kerberos, ...), and the dynamic loader relocates all of them before main: about
// three quarters of the start-up time of every delegate-agent process. Most commands
// (`sandbox-run`, `--version`, `check-job`, key and secret management) never make an
// HTTP request. So the binary does not link libcurl: this file defines the part of
// libcurl's API the project calls and forwards each call to the real library, which the
// first call loads with dlopen (and initialises with curl_global_init, once, under
// call_once, which also makes the global init thread-safe).
//
// Fails closed: when libcurl cannot be loaded, the constructors (curl_easy_init,
// curl_url, curl_slist_append) return NULL and curl_global_init an error, which every
// caller already treats as "cannot make the request"; the other calls need a handle.
#include <curl/curl.h>
#include <dlfcn.h>

#include <cstdarg>
#include <cstdlib>
#include <mutex>
#include <string>

#include <delegate/common/log.hpp>

namespace {

constexpr const char* kSoname = "libcurl.so.4";

struct Api {
  CURLcode (*global_init)(long) = nullptr;
  CURL* (*easy_init)() = nullptr;
  CURLcode (*easy_setopt)(CURL*, CURLoption, ...) = nullptr;
  CURLcode (*easy_getinfo)(CURL*, CURLINFO, ...) = nullptr;
  CURLcode (*easy_perform)(CURL*) = nullptr;
  void (*easy_cleanup)(CURL*) = nullptr;
  void (*easy_reset)(CURL*) = nullptr;
  const char* (*easy_strerror)(CURLcode) = nullptr;
  curl_slist* (*slist_append)(curl_slist*, const char*) = nullptr;
  void (*slist_free_all)(curl_slist*) = nullptr;
  CURLU* (*url)() = nullptr;
  void (*url_cleanup)(CURLU*) = nullptr;
  CURLUcode (*url_get)(CURLU*, CURLUPart, char**, unsigned int) = nullptr;
  CURLUcode (*url_set)(CURLU*, CURLUPart, const char*, unsigned int) = nullptr;
  void (*free)(void*) = nullptr;
  time_t (*getdate)(const char*, const time_t*) = nullptr;
  CURLcode init_result = CURLE_FAILED_INIT;
  bool ok = false;
};

template <class F>
bool bind(void* lib, const char* name, F& out) {
  out = reinterpret_cast<F>(::dlsym(lib, name));
  return out != nullptr;
}

const Api& api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    // Debian's libcurl maps GnuTLS only through librtmp and libldap, protocols the
    // project never enables (every handle is CURLOPT_PROTOCOLS_STR "https", over
    // OpenSSL). GnuTLS's library constructor initialises it anyway unless
    // GNUTLS_NO_IMPLICIT_INIT is set: delegate-agent's main() sets it before its first
    // thread (about 0.6 MiB of resident memory and start-up time saved). It is not set
    // here: changing the environment while other threads may read it is a data race
    // (glibc before 2.40 frees and shifts environment arrays in setenv/unsetenv).
    void* lib = ::dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = ::dlerror();
      delegate::log::error("http", std::string("cannot load ") + kSoname + ": " + (why ? why : "unknown error"));
      return;
    }
    const bool all = bind(lib, "curl_global_init", a.global_init) && bind(lib, "curl_easy_init", a.easy_init) &&
                     bind(lib, "curl_easy_setopt", a.easy_setopt) && bind(lib, "curl_easy_getinfo", a.easy_getinfo) &&
                     bind(lib, "curl_easy_perform", a.easy_perform) &&
                     bind(lib, "curl_easy_cleanup", a.easy_cleanup) && bind(lib, "curl_easy_reset", a.easy_reset) &&
                     bind(lib, "curl_easy_strerror", a.easy_strerror) &&
                     bind(lib, "curl_slist_append", a.slist_append) &&
                     bind(lib, "curl_slist_free_all", a.slist_free_all) && bind(lib, "curl_url", a.url) &&
                     bind(lib, "curl_url_cleanup", a.url_cleanup) && bind(lib, "curl_url_get", a.url_get) &&
                     bind(lib, "curl_url_set", a.url_set) && bind(lib, "curl_free", a.free) &&
                     bind(lib, "curl_getdate", a.getdate);
    if (!all) {
      const char* why = ::dlerror();
      delegate::log::error("http", std::string(kSoname) + " lacks a function delegate needs: " +
                                       (why != nullptr ? why : "unknown symbol"));
      return;
    }
    a.init_result = a.global_init(CURL_GLOBAL_DEFAULT);
    if (a.init_result != CURLE_OK) {
      delegate::log::error("http", std::string("curl_global_init failed: ") + a.easy_strerror(a.init_result));
      return;
    }
    a.ok = true;
  });
  return a;
}

}  // namespace

// curl.h declares the variadic entry points with an enum as their last named parameter,
// and the definitions must match. va_start on it is well defined when the enum is not
// promoted, i.e. its underlying type is int-sized (no -fshort-enums): checked here.
// clang warns regardless of the underlying type.
static_assert(sizeof(CURLoption) == sizeof(int) && sizeof(CURLINFO) == sizeof(int));
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wvarargs"
#endif

extern "C" {

CURLcode curl_global_init(long /*flags: always CURL_GLOBAL_DEFAULT here*/) {
  const Api& a = api();
  return a.ok ? CURLE_OK : (a.init_result == CURLE_OK ? CURLE_FAILED_INIT : a.init_result);
}

CURL* curl_easy_init() {
  const Api& a = api();
  return a.ok ? a.easy_init() : nullptr;
}

// The variadic argument is read with the type libcurl itself reads it with, which the
// option number encodes (curl.h, CURLOPTTYPE_*).
CURLcode curl_easy_setopt(CURL* h, CURLoption option, ...) {
  const Api& a = api();
  if (!a.ok) return CURLE_FAILED_INIT;
  va_list ap;
  va_start(ap, option);
  CURLcode rc = CURLE_BAD_FUNCTION_ARGUMENT;
  const int o = static_cast<int>(option);
  if (o < CURLOPTTYPE_OBJECTPOINT) {
    rc = a.easy_setopt(h, option, va_arg(ap, long));
  } else if (o < CURLOPTTYPE_FUNCTIONPOINT) {
    rc = a.easy_setopt(h, option, va_arg(ap, void*));
  } else if (o < CURLOPTTYPE_OFF_T) {
    using Fn = void (*)();
    rc = a.easy_setopt(h, option, va_arg(ap, Fn));
  } else if (o < CURLOPTTYPE_BLOB) {
    rc = a.easy_setopt(h, option, va_arg(ap, curl_off_t));
  } else {
    rc = a.easy_setopt(h, option, va_arg(ap, curl_blob*));
  }
  va_end(ap);
  return rc;
}

// Every CURLINFO_* takes a pointer to where the answer goes.
CURLcode curl_easy_getinfo(CURL* h, CURLINFO info, ...) {
  const Api& a = api();
  if (!a.ok) return CURLE_FAILED_INIT;
  va_list ap;
  va_start(ap, info);
  void* out = va_arg(ap, void*);
  va_end(ap);
  return a.easy_getinfo(h, info, out);
}

CURLcode curl_easy_perform(CURL* h) {
  const Api& a = api();
  return a.ok ? a.easy_perform(h) : CURLE_FAILED_INIT;
}

void curl_easy_cleanup(CURL* h) {
  const Api& a = api();
  if (a.ok) a.easy_cleanup(h);
}

void curl_easy_reset(CURL* h) {
  const Api& a = api();
  if (a.ok) a.easy_reset(h);
}

const char* curl_easy_strerror(CURLcode code) {
  const Api& a = api();
  return a.ok ? a.easy_strerror(code) : "libcurl could not be loaded";
}

curl_slist* curl_slist_append(curl_slist* list, const char* s) {
  const Api& a = api();
  return a.ok ? a.slist_append(list, s) : nullptr;
}

void curl_slist_free_all(curl_slist* list) {
  const Api& a = api();
  if (a.ok) a.slist_free_all(list);
}

CURLU* curl_url() {
  const Api& a = api();
  return a.ok ? a.url() : nullptr;
}

void curl_url_cleanup(CURLU* u) {
  const Api& a = api();
  if (a.ok) a.url_cleanup(u);
}

CURLUcode curl_url_get(CURLU* u, CURLUPart what, char** part, unsigned int flags) {
  const Api& a = api();
  return a.ok ? a.url_get(u, what, part, flags) : CURLUE_OUT_OF_MEMORY;
}

CURLUcode curl_url_set(CURLU* u, CURLUPart what, const char* part, unsigned int flags) {
  const Api& a = api();
  return a.ok ? a.url_set(u, what, part, flags) : CURLUE_OUT_OF_MEMORY;
}

void curl_free(void* p) {
  const Api& a = api();
  if (a.ok) a.free(p);
}

time_t curl_getdate(const char* p, const time_t* unused) {
  const Api& a = api();
  return a.ok ? a.getdate(p, unused) : -1;
}

}  // extern "C"
