#pragma once
// Internal to the runbook parser: what runbook_http.cpp shares with runbook.cpp.
// Errors are thrown as detail::YamlError and caught at parse_runbook.
#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include <delegate/policies/runbook.hpp>

namespace delegate::policies::detail {

// Every ${params.x} / ${steps.S.outputs.N} in `tmpl` names a parameter that always has
// a value or a declared output of an earlier step.
void check_refs_in(const Runbook& rb, std::string_view tmpl, const std::string& path);
// check_refs_in, plus: the ${secrets.NAME} references in `tmpl` are well formed and
// added to step.secrets.
void check_template(const Runbook& rb, Step& st, std::string_view tmpl, const std::string& path);

// with: of an http step (runbook_http.cpp).
void parse_http_with(const YAML::Node& with, const std::string& wpath, Step& st, const Runbook& rb);
// After the step's sandbox is parsed: outputs are JSON Pointers, and the URL's (and the
// token URL's) host:port are in sandbox.egress unless the step has network: true.
void check_http_step(const Step& st, const std::string& path);

}  // namespace delegate::policies::detail
