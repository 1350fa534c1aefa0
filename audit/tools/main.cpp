// delegate-audit: offline verifier for exported audit logs (docs/audit.md, "delegate-audit verify").
// Exit codes: 0 every job verified, 1 a fault was found, 2 usage or input error.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/program_options.hpp>

#include <delegate/audit/export_verifier.hpp>
#include <delegate/common/crypto.hpp>

namespace po = boost::program_options;
using namespace delegate;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitTampered = 1;
constexpr int kExitUsage = 2;

constexpr const char* kUsage =
    "Usage: delegate-audit verify --public-key KEY [--allow-incomplete] [FILE.jsonl...]\n"
    "       delegate-audit --help | --version\n"
    "\n"
    "Verifies an exported audit log (JSON Lines) offline: record hashes, hash chains,\n"
    "Ed25519 signatures under the pinned KEY, sequence numbers, timestamps, job\n"
    "completeness, and the agent stream (_agent): its checkpoints must match the\n"
    "jobs in the export. All FILEs together form one export, in any order. Reads\n"
    "standard input when no FILE is given.\n"
    "\n"
    "Prints \"OK <job> <n> records\" per stream and exits 0, or prints only\n"
    "\"TAMPERED <job> seq=<n>: <reason>: <detail>\" for the first fault and exits 1.\n"
    "Exit 2: usage error, unreadable file or bad key.\n";

int usage_error(const std::string& msg) {
  std::cerr << "delegate-audit: " << msg << " (try --help)\n";
  return kExitUsage;
}

// Job ids and details echo untrusted input: a job named "x\nOK job_1 7 records" must not
// forge a verdict line. Control bytes (and spaces in ids, which would split the fields)
// are printed as \xNN.
std::string printable(std::string_view s, bool allow_space) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f || (c == ' ' && !allow_space) || c == '\\') {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

// Prints the verdicts of the export; true if all of them are clean.
bool report(const std::vector<audit::JobVerdict>& verdicts) {
  for (const auto& v : verdicts) {
    const std::string job = printable(v.job, /*allow_space=*/false);
    if (v.fault) {
      std::cout << "TAMPERED " << job << " seq=" << v.fault->seq << ": " << audit::to_string(v.fault->fault)
                << ": " << printable(v.fault->detail, /*allow_space=*/true) << std::endl;
      return false;
    }
    std::cout << "OK " << job << " " << v.records << " records" << std::endl;
  }
  return true;
}

int verify(const std::vector<std::string>& args) {
  po::options_description opts("verify options");
  opts.add_options()
      ("public-key", po::value<std::string>(), "Ed25519 public key: base64 of 32 bytes, or @file")
      ("allow-incomplete", po::bool_switch(), "accept jobs that have not reached job.end")
      ("help,h", "show help");
  po::options_description hidden;
  hidden.add_options()("file", po::value<std::vector<std::string>>()->composing(), "input file");
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("file", -1);

  po::variables_map vm;
  po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << kUsage;
    return kExitOk;
  }
  if (!vm.count("public-key")) return usage_error("verify needs --public-key");

  auto key = parse_public_key(vm["public-key"].as<std::string>());
  if (!key) return usage_error("bad public key: " + key.error().message);

  audit::VerifyOptions options;
  options.allow_incomplete = vm["allow-incomplete"].as<bool>();

  std::vector<std::string> files;
  if (vm.count("file")) files = vm["file"].as<std::vector<std::string>>();

  // All inputs form one export: the agent stream and the job streams may be spread over
  // the files in any order and interleaved within them.
  audit::ExportVerifier verifier(*key, options);
  if (files.empty()) {
    verifier.read(std::cin);
    if (std::cin.bad()) return usage_error("reading standard input failed");
    if (verifier.lines() == 0 && !options.allow_incomplete) {
      // An empty export is what deleting everything looks like.
      std::cout << "TAMPERED - seq=0: truncated: input holds no records" << std::endl;
      return kExitTampered;
    }
    return report(verifier.finish()) ? kExitOk : kExitTampered;
  }

  // Open everything first so that a typo in the last path is a usage error, not a
  // half-finished verification.
  std::vector<std::unique_ptr<std::ifstream>> streams;
  for (const auto& f : files) {
    std::error_code ec;
    if (std::filesystem::is_directory(f, ec)) return usage_error("cannot read " + f + ": is a directory");
    auto s = std::make_unique<std::ifstream>(f, std::ios::binary);
    if (!*s) return usage_error("cannot open " + f + ": " + std::strerror(errno));
    streams.push_back(std::move(s));
  }
  for (std::size_t i = 0; i < files.size(); ++i) {
    const auto before = verifier.lines();
    const bool clean = verifier.read(*streams[i]);
    if (streams[i]->bad()) return usage_error("reading " + files[i] + " failed");
    if (!clean) break;  // the fault is reported by finish()
    if (verifier.lines() == before && !options.allow_incomplete) {
      // An exporter writes no empty files; an emptied one is a deletion.
      std::cout << "TAMPERED - seq=0: truncated: " << files[i] << " holds no records" << std::endl;
      return kExitTampered;
    }
  }
  return report(verifier.finish()) ? kExitOk : kExitTampered;
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage_error("missing command");
  const std::string& cmd = args.front();
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  if (cmd == "--version") {
    std::cout << "delegate-audit " << DELEGATE_VERSION << "\n";
    return kExitOk;
  }
  if (cmd != "verify") return usage_error("unknown command \"" + cmd + "\"");
  return verify(std::vector<std::string>(args.begin() + 1, args.end()));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const po::error& e) {
    return usage_error(e.what());
  } catch (const std::exception& e) {
    std::cerr << "delegate-audit: " << e.what() << "\n";
    return kExitUsage;
  } catch (...) {
    std::cerr << "delegate-audit: unexpected error\n";
    return kExitUsage;
  }
}
