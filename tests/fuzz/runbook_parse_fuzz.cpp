// libFuzzer target: runbook YAML. Runbooks are operator-written, but a parser crash on
// a typo must never take the agent down, and yaml-cpp exceptions must not escape.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <delegate/policies/runbook.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto rb = delegate::policies::parse_runbook(text);
  if (!rb) return 0;
  // A loaded runbook must accept its own defaults and substitute every argv template
  // once required params are present.
  delegate::Json params = delegate::Json::object();
  for (const auto& [name, spec] : rb->params) {
    if (spec.required) {
      switch (spec.type) {
        case delegate::policies::ParamType::string: params[name] = "a"; break;
        case delegate::policies::ParamType::integer: params[name] = spec.min.value_or(0); break;
        case delegate::policies::ParamType::boolean: params[name] = true; break;
      }
    }
  }
  auto v = delegate::policies::validate_params(*rb, params);
  if (v) {
    // Each step sees a value for every output of the steps before it, as at run time.
    delegate::Json outputs = delegate::Json::object();
    for (const auto& st : rb->steps) {
      for (const auto& a : st.argv) (void)delegate::policies::substitute(a, *v, outputs);
      for (const auto& [name, tmpl] : st.env) (void)delegate::policies::substitute(tmpl, *v, outputs);
      for (const auto& [name, spec] : st.outputs) {
        switch (spec.value.type) {
          case delegate::policies::ParamType::string: outputs[st.name][name] = "a"; break;
          case delegate::policies::ParamType::integer: outputs[st.name][name] = 1; break;
          case delegate::policies::ParamType::boolean: outputs[st.name][name] = false; break;
        }
        (void)delegate::policies::check_output(st.name, name, spec, outputs[st.name][name]);
      }
    }
  }
  return 0;
}
