// delegate-controlplane: reference control plane and audit store.
#include <boost/program_options.hpp>

#include <cstdlib>
#include <iostream>
#include <optional>

#include <delegate/common/log.hpp>
#include <delegate/common/metrics_http.hpp>
#include <delegate/controlplane/server.hpp>

namespace po = boost::program_options;
using namespace delegate;

namespace {

constexpr const char* kUsage =
    "usage: delegate-controlplane init --dir DIR [--listen HOST:PORT] [--runbooks SRC] [--force]\n"
    "       delegate-controlplane serve --dir DIR [--listen HOST:PORT] [--lease-s N]\n"
    "                                   [--metrics-listen 127.0.0.1:PORT | unix:/PATH]\n"
    "                                   [--log-format text|json] [--log-level LEVEL]\n"
    "       (DELEGATE_LOG_FORMAT / DELEGATE_LOG_LEVEL set the same; the flags win)\n"
    "       delegate-controlplane --help | --version\n";

#ifndef DELEGATE_RUNBOOKS_SRC
#define DELEGATE_RUNBOOKS_SRC ""
#endif

// --log-format/--log-level, else DELEGATE_LOG_FORMAT/DELEGATE_LOG_LEVEL, else text/info.
int configure_log(const po::variables_map& vm) {
  const auto pick = [&](const char* flag, const char* env) -> std::optional<std::string> {
    if (vm.count(flag)) return vm[flag].as<std::string>();
    if (const char* e = std::getenv(env); e != nullptr) return std::string(e);
    return std::nullopt;
  };
  if (auto f = pick("log-format", "DELEGATE_LOG_FORMAT")) {
    auto v = log::parse_format(*f);
    if (!v) {
      std::cerr << "delegate-controlplane: log format must be text or json, not \"" << *f << "\"\n";
      return 2;
    }
    log::set_format(*v);
  }
  if (auto l = pick("log-level", "DELEGATE_LOG_LEVEL")) {
    auto v = log::parse_level(*l);
    if (!v) {
      std::cerr << "delegate-controlplane: log level must be debug, info, warn or error, not \"" << *l << "\"\n";
      return 2;
    }
    log::set_level(*v);
  }
  return 0;
}

int run(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h") {
    std::cout << kUsage;
    return 0;
  }
  if (cmd == "--version") {
    std::cout << "delegate-controlplane " << DELEGATE_VERSION << "\n";
    return 0;
  }
  po::options_description opts;
  opts.add_options()("dir", po::value<std::string>()->required())("listen", po::value<std::string>())(
      "runbooks", po::value<std::string>())("force", po::bool_switch())("lease-s", po::value<int>())(
      "metrics-listen", po::value<std::string>())("help", po::bool_switch())("log-format", po::value<std::string>())(
      "log-level", po::value<std::string>());
  po::variables_map vm;
  po::store(po::command_line_parser(argc - 1, argv + 1).options(opts).run(), vm);
  if (vm["help"].as<bool>()) {
    std::cout << kUsage;
    return 0;
  }
  po::notify(vm);
  if (auto r = configure_log(vm); r != 0) return r;
  if (cmd == "init") {
    controlplane::InitOptions o;
    o.dir = vm["dir"].as<std::string>();
    if (vm.count("listen")) o.listen = vm["listen"].as<std::string>();
    o.runbooks_source = vm.count("runbooks") ? vm["runbooks"].as<std::string>() : std::string(DELEGATE_RUNBOOKS_SRC);
    o.force = vm["force"].as<bool>();
    if (auto r = controlplane::init_dir(o); !r) {
      std::cerr << "delegate-controlplane: " << r.error().message << "\n";
      return 1;
    }
    std::cout << "initialised " << o.dir.string() << " (agent config: " << (o.dir / "agent.yaml").string() << ")\n";
    return 0;
  }
  if (cmd == "serve") {
    auto cfg = controlplane::load_dir_config(vm["dir"].as<std::string>());
    if (!cfg) {
      std::cerr << "delegate-controlplane: " << cfg.error().message << "\n";
      return 1;
    }
    if (vm.count("listen")) {
      auto l = vm["listen"].as<std::string>();
      auto colon = l.rfind(':');
      if (colon == std::string::npos) {
        std::cerr << "delegate-controlplane: --listen must be HOST:PORT\n";
        return 2;
      }
      cfg->listen_host = l.substr(0, colon);
      cfg->port = static_cast<std::uint16_t>(std::stoul(l.substr(colon + 1)));
    }
    if (vm.count("lease-s")) cfg->lease = std::chrono::seconds(vm["lease-s"].as<int>());
    auto server = controlplane::Server::create(*cfg);
    if (!server) {
      std::cerr << "delegate-controlplane: " << server.error().message << "\n";
      return 1;
    }
    log::info("controlplane", "listening on https://" + cfg->listen_host + ":" + std::to_string((*server)->port()) +
                                  " (TLS 1.3 only)");
    // Health and metrics on their own plain-HTTP listener, loopback or a Unix socket only
    // (docs/operations.md): a scraper needs no admin token, and the API port stays the API.
    std::unique_ptr<metrics::HttpListener> listener;
    if (vm.count("metrics-listen")) {
      auto address = metrics::parse_listen_address(vm["metrics-listen"].as<std::string>());
      if (!address) {
        std::cerr << "delegate-controlplane: --metrics-listen: " << address.error().message << "\n";
        return 2;
      }
      controlplane::Server* s = server->get();
      static bool collector = [s] {
        // The registry is only read by the listener, which stops before the server goes.
        controlplane::Server::metrics_registry().on_collect([s] { s->refresh_metrics(std::chrono::seconds(1)); });
        return true;
      }();
      (void)collector;
      auto started = metrics::HttpListener::start(*address, metrics::Endpoints{&controlplane::Server::metrics_registry(), nullptr});
      if (!started) {
        // As in the agent: a squatted port costs the metrics, not the service.
        log::error("controlplane", started.error().message + "; serving without /healthz, /readyz and /metrics");
      } else {
        listener = std::move(*started);
        log::info("controlplane", "health and metrics on " + listener->describe());
      }
    }
    (*server)->run();
    listener.reset();
    return 0;
  }
  std::cerr << "delegate-controlplane: unknown command \"" << cmd << "\"\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "delegate-controlplane: " << e.what() << "\n";
    return 2;
  }
}
