#pragma once
// Shared helpers for the sandbox tests.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <delegate/sandbox/launcher.hpp>
#include <delegate/sandbox/seccomp.hpp>

namespace delegate::sandbox::testing {

inline const char* prober() { return DELEGATE_PROBER_BIN; }

struct Captured {
  Outcome outcome;
  std::string out;
  std::string err;
  std::vector<std::size_t> chunk_sizes;
};

inline SeccompProgram compile_or_die(std::string_view profile, bool network = false) {
  auto p = SeccompProgram::compile(profile, SeccompOptions{.network = network});
  if (!p) {
    ADD_FAILURE() << "compile(" << profile << "): " << p.error().message;
    std::abort();
  }
  return std::move(*p);
}

inline Captured run_capture(const Spec& spec, const SeccompProgram& filter,
                            const CancelToken* cancel = nullptr) {
  Captured c;
  auto r = run(
      spec, filter,
      [&](Stream s, std::string_view data) {
        c.chunk_sizes.push_back(data.size());
        (s == Stream::stdout_stream ? c.out : c.err).append(data);
      },
      cancel);
  if (!r) {
    ADD_FAILURE() << "run failed: " << r.error().message;
    return c;
  }
  c.outcome = std::move(*r);
  return c;
}

inline Captured run_argv(std::vector<std::string> argv, std::string_view profile = "default") {
  Spec spec;
  spec.argv = std::move(argv);
  spec.profile = std::string(profile);
  return run_capture(spec, compile_or_die(profile));
}

}  // namespace delegate::sandbox::testing
