// delegate-agent secret set|list|delete: the local secret store (docs/secrets.md).
// Exit statuses as for the other subcommands: 0 success; 2 usage, unreadable or
// malformed input (configuration, store, value); 1 other failures (no such secret,
// cannot write).
#include <boost/program_options.hpp>

#include <openssl/crypto.h>

#include <iostream>
#include <iterator>

#include <delegate/agent/config.hpp>
#include <delegate/agent/secrets.hpp>
#include <delegate/connectors/masker.hpp>

#include "cli.hpp"

namespace po = boost::program_options;

namespace delegate::agent::cli {
namespace {

constexpr int kUsage = 2;

int error(const std::string& msg, int code) {
  std::cerr << "delegate-agent secret: " << msg << "\n";
  return code;
}

// The value comes from stdin, never argv (visible in /proc and shell history). One
// trailing newline (from `echo` or a terminal) is not part of it.
Result<std::string> read_value() {
  std::string v;
  char buf[4096];
  while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
    v.append(buf, static_cast<std::size_t>(std::cin.gcount()));
    if (v.size() > connectors::kMaxSecretLength + 1) {
      OPENSSL_cleanse(v.data(), v.size());
      return fail(Errc::too_large, "the value on stdin is larger than 64 KiB");
    }
  }
  OPENSSL_cleanse(buf, sizeof buf);
  if (v.ends_with('\n')) v.pop_back();
  if (v.ends_with('\r')) v.pop_back();
  return v;
}

}  // namespace

int secret(const std::vector<std::string>& args) {
  constexpr const char* kHelp = "usage: secret set NAME | list | delete NAME --config FILE (set reads the value from stdin)";
  if (args.empty()) return error(kHelp, kUsage);
  const std::string action = args.front();
  po::options_description opts("delegate-agent secret");
  opts.add_options()("config", po::value<std::string>()->required())("name", po::value<std::string>());
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(std::vector<std::string>(args.begin() + 1, args.end())).options(opts).positional(pos).run(), vm);
  po::notify(vm);
  auto config = load_config(vm["config"].as<std::string>(), process_environment());
  if (!config) return error(config.error().message, kUsage);
  auto store = SecretStore::open(config->agent.state_dir);
  if (!store) return error(store.error().message, kUsage);

  if (action == "list") {
    if (vm.count("name")) return error("list takes no name", kUsage);
    auto names = store->names();
    if (!names) return error(names.error().message, kUsage);
    for (const auto& n : *names) std::cout << n << "\n";
    return 0;
  }
  if (action != "set" && action != "delete") return error("unknown action \"" + action + "\" (set, list, delete)", kUsage);
  if (!vm.count("name")) return error(action + ": a secret NAME is required", kUsage);
  const auto name = vm["name"].as<std::string>();
  if (action == "set") {
    auto value = read_value();
    if (!value) return error(value.error().message, kUsage);
    auto r = store->set(name, *value);
    OPENSSL_cleanse(value->data(), value->size());
    if (!r) return error(r.error().message, r.error().code == Errc::invalid_argument || r.error().code == Errc::crypto ||
                                                    r.error().code == Errc::parse || r.error().code == Errc::permission
                                                ? kUsage
                                                : 1);
    std::cout << "stored " << name << "\n";
    return 0;
  }
  auto removed = store->remove(name);
  if (!removed) return error(removed.error().message, removed.error().code == Errc::io ? 1 : kUsage);
  if (!*removed) return error("no secret named " + name, 1);
  std::cout << "deleted " << name << "\n";
  return 0;
}

}  // namespace delegate::agent::cli
