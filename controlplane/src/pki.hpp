#pragma once
// Development PKI for `init`: an EC P-256 CA and a server certificate it signs.
#include <filesystem>
#include <string>
#include <vector>

#include <delegate/common/error.hpp>

namespace delegate::controlplane {

struct DevPki {
  std::string ca_cert_pem;
  std::string server_cert_pem;
  std::string server_key_pem;
};

// dns_names / ip_addresses become the server certificate's subjectAltName.
[[nodiscard]] Result<DevPki> make_dev_pki(const std::vector<std::string>& dns_names,
                                          const std::vector<std::string>& ip_addresses,
                                          int valid_days);

}  // namespace delegate::controlplane
