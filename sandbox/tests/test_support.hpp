#pragma once
// Shared helpers for the sandbox tests.
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
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

inline SeccompProgram compile_or_die(std::string_view profile, bool network = false, bool unix_sockets = false) {
  auto p = SeccompProgram::compile(profile, SeccompOptions{.network = network, .unix_sockets = unix_sockets});
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

// "name errno=N" → N; -1 when the line is missing (the prober died).
inline int parse_errno(const std::string& name, const std::string& out) {
  const std::string prefix = name + " errno=";
  const auto pos = out.find(prefix);
  if (pos == std::string::npos) return -1;
  return std::atoi(out.c_str() + pos + prefix.size());
}

// A listening Unix socket owned by the test process, for steps whose filter allows
// AF_UNIX: the launcher runs such a filter only with a host socket granted.
inline const std::string& granted_test_socket() {
  static const std::string path = [] {
    std::string dir = (std::filesystem::temp_directory_path() / "delegate-grant-XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) std::abort();
    const std::string p = dir + "/granted.sock";
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", p.c_str());
    // Connectable by the step user (nobody when the tests run as root).
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 8) != 0 ||
        ::chmod(p.c_str(), 0666) != 0) {
      std::abort();
    }
    static char to_remove[sizeof addr.sun_path];
    std::snprintf(to_remove, sizeof to_remove, "%s", dir.c_str());
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(to_remove, ec);
    });
    return p;  // fd stays open for the life of the test process
  }();
  return path;
}

inline void grant_if_needed(Spec& spec, const SeccompProgram& filter) {
  if (filter.options().unix_sockets && spec.isolation.sockets.empty()) {
    spec.isolation.sockets = {granted_test_socket()};
  }
}

inline int probe_sandboxed(const SeccompProgram& filter, const std::string& name) {
  Spec spec;
  spec.argv = {prober(), name};
  grant_if_needed(spec, filter);
  const auto c = run_capture(spec, filter);
  EXPECT_EQ(c.outcome.status, Status::exited) << name << ": " << c.outcome.error << c.err;
  return parse_errno(name, c.out);
}

// The same probe outside any sandbox, to tell "denied by our filter" from "denied by the
// host anyway" and to check that allowed calls behave exactly as without a filter.
inline int probe_unsandboxed(const std::string& name) {
  const std::string cmd = std::string(prober()) + " " + name + " 2>/dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return -1;
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
  ::pclose(f);
  return parse_errno(name, out);
}

// A private directory under TMPDIR, removed with its content.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "delegate-sandbox-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `content` to `name` in the directory and returns the full path.
  std::string write(const std::string& name, const std::string& content) const {
    const auto file = path_ / name;
    std::ofstream(file, std::ios::binary) << content;
    return file.string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace delegate::sandbox::testing
