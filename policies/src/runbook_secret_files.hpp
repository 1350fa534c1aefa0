#pragma once
// with.secret_files of command and script steps (internal to the runbook parser).
#include <yaml-cpp/yaml.h>

#include <string>

#include <delegate/policies/runbook.hpp>

namespace delegate::policies::detail {

// Fills st.secret_files and adds the names to st.secrets; throws like the other
// runbook checks, naming `path` and the step.
void parse_secret_files(const YAML::Node& n, const std::string& path, Step& st);

}  // namespace delegate::policies::detail
