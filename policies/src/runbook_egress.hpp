#pragma once
// sandbox.egress in a runbook step: the host:port pairs the step may reach through the
// agent's egress proxy (docs/egress.md).
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace delegate::policies::detail {

inline constexpr std::size_t kMaxEgressEntries = 32;

// Canonical "host:port" strings; throws the loader's error (yfail) on anything else:
// not a list, more than kMaxEgressEntries, an entry that is not a strict host:port, a
// parameter or output reference, or a duplicate (after canonicalisation).
[[nodiscard]] std::vector<std::string> parse_egress(const YAML::Node& n, const std::string& path);

}  // namespace delegate::policies::detail
