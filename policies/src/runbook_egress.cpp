#include "runbook_egress.hpp"

#include <algorithm>

#include <delegate/egress/host_port.hpp>

#include "yaml_util.hpp"

namespace delegate::policies::detail {

std::vector<std::string> parse_egress(const YAML::Node& n, const std::string& path) {
  if (!n.IsSequence()) yfail(path, "must be a list of host:port");
  if (n.size() > kMaxEgressEntries) yfail(path, "at most " + std::to_string(kMaxEgressEntries) + " entries");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const std::string where = path + "[" + std::to_string(i) + "]";
    const std::string text = ystring(n[i], where);
    // Where a step may connect is fixed by the runbook, never by a caller.
    if (text.find("${") != std::string::npos) yfail(where, "an egress target cannot be a parameter or step output");
    auto hp = egress::parse_host_port(text);
    if (!hp) yfail(where, hp.error().message);
    std::string canon = egress::to_string(*hp);
    if (std::find(out.begin(), out.end(), canon) != out.end()) yfail(where, "duplicate entry " + canon);
    out.push_back(std::move(canon));
  }
  return out;
}

}  // namespace delegate::policies::detail
