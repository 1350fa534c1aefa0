// delegate-agent: the daemon and its offline subcommands.
#include <boost/program_options/errors.hpp>
#include <curl/curl.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <delegate/agent/cp_client.hpp>
#include <delegate/connectors/http_request.hpp>
#include <delegate/sandbox/cli.hpp>

#include "cli.hpp"

namespace {

constexpr const char* kUsage =
    "usage: delegate-agent run --config FILE [--log-level LEVEL] [--log-format text|json]\n"
    "       delegate-agent check-job --config FILE --job FILE [--now RFC3339]\n"
    "       delegate-agent sandbox-run [--profile NAME|FILE] [--network] [--timeout S] [--memory-mb N]\n"
    "                                  [--pids N] [--ro PATH]... [--rw PATH]... -- PROGRAM [ARGS...]\n"
    "       delegate-agent doctor --config FILE\n"
    "       delegate-agent identity --config FILE\n"
    "       delegate-agent api-key create --config FILE --id ID [--scope S]... [--role R]... [--expires RFC3339]\n"
    "       delegate-agent api-key revoke --config FILE --id ID\n"
    "       delegate-agent api-key list --config FILE\n"
    "       delegate-agent secret set NAME --config FILE   (value read from stdin)\n"
    "       delegate-agent secret list --config FILE\n"
    "       delegate-agent secret delete NAME --config FILE\n"
    "       delegate-agent --help | --version\n";

}  // namespace

int main(int argc, char** argv) {
  // Debian's libcurl drags GnuTLS in (through librtmp and libldap, never used: every
  // handle is https over OpenSSL), and GnuTLS's library constructor initialises it
  // unless this is set: set here, before any thread could read the environment, for
  // whatever command loads libcurl later (connectors/src/curl_loader.cpp). Steps get a
  // clean environment, so they never see it.
  (void)::setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 0);
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (cmd == "--version") {
    // Also the test step doctor and the image check launch in the sandbox: _Exit after
    // the flush, so that no exit-time handler runs there (a sanitizer build's leak check
    // needs ptrace, which the step's seccomp filter refuses, and would fail the step).
    std::cout << "delegate-agent " << DELEGATE_VERSION << "\n";
    std::cout.flush();
    std::_Exit(std::cout ? 0 : 1);
  }
  if (cmd == "sandbox-run") return delegate::sandbox::sandbox_run_main(argc - 1, argv + 1);
  // Internal: the sandboxed half of an http step (request spec on stdin, never argv).
  if (cmd == "http-request") {
    // The sandboxed half of an http step is a one-shot process with nothing to tear
    // down: it ends with _Exit once its output is flushed. That also keeps exit-time
    // handlers from running inside the sandbox, such as a sanitizer build's leak check,
    // which needs ptrace (refused by the step's seccomp filter) and would fail the step.
    const int rc = delegate::connectors::http_request_main();
    std::cout.flush();
    std::cerr.flush();
    std::_Exit(rc);
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
  }
  try {
    // The daemon loads libcurl at its start, so that a missing library stops it at once;
    // the other commands load it at their first request, if they make one.
    if (cmd == "run" && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      std::cerr << "delegate-agent run: cannot load libcurl.so.4 (docs/install.md)\n";
      return 1;
    }
    if (cmd == "run") return delegate::agent::cli::run(args);
    if (cmd == "check-job") return delegate::agent::cli::check_job(args);
    if (cmd == "identity") return delegate::agent::cli::identity(args);
    if (cmd == "api-key") return delegate::agent::cli::api_key(args);
    if (cmd == "secret") return delegate::agent::cli::secret(args);
    if (cmd == "doctor") {
      // doctor is run where the sandbox may be refused (inside a container, inside a
      // step): its report is flushed and it ends with _Exit, for the reason given for
      // http-request above; a leak check dying under seccomp would lose the report.
      const int rc = delegate::agent::cli::doctor(args);
      std::cout.flush();
      std::cerr.flush();
      std::_Exit(rc);
    }
  } catch (const boost::program_options::error& e) {
    std::cerr << "delegate-agent " << cmd << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "delegate-agent " << cmd << ": " << e.what() << "\n";
    return 1;
  }
  std::cerr << "delegate-agent: unknown command \"" << cmd << "\"\n" << kUsage;
  return 2;
}
