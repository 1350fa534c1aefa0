#pragma once
// A raw OpenSSL TLS client for tests that need what no well-behaved client sends:
// old protocol versions, malformed HTTP, arbitrary bytes.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace delegate::testing {

struct RawTlsResult {
  bool handshake_ok = false;
  std::string error;     // handshake failure text
  std::string response;  // everything read until the peer closed (or 5 s passed)
};

// max_version: TLS1_2_VERSION, TLS1_3_VERSION, ...
RawTlsResult raw_tls_exchange(std::uint16_t port, const std::filesystem::path& ca_file, int max_version,
                              const std::string& request);

}  // namespace delegate::testing
