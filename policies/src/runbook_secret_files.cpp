// with.secret_files: {FILE: "${secrets.NAME}"}. The step finds each secret as a file in
// a private tmpfs at /run/secrets (docs/runbooks.md, docs/secrets.md): for programs that
// read a key file, without the value ever being in argv, the environment or on disk.
#include "runbook_secret_files.hpp"

#include <algorithm>

#include <delegate/common/strict.hpp>

#include "yaml_util.hpp"

namespace delegate::policies::detail {
namespace {

// [A-Za-z0-9._-]{1,64} without a leading dot: no hidden files, no "." or "..", no '/'.
bool valid_file_name(std::string_view f) {
  if (f.empty() || f.size() > 64 || f.front() == '.') return false;
  return std::all_of(f.begin(), f.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

}  // namespace

void parse_secret_files(const YAML::Node& n, const std::string& path, Step& st) {
  const auto files = ymap_keys(n, path);
  if (files.empty() || files.size() > kMaxSecretFiles) yfail(path, "must name 1..16 files");
  for (const auto& file : files) {
    const std::string fpath = ykey(path, file);
    if (!valid_file_name(file)) {
      yfail(fpath, "file names must match [A-Za-z0-9._-]{1,64} and not start with '.'");
    }
    const std::string value = ystring(n[file], fpath);
    // Exactly one reference and nothing else: the file holds the value, byte for byte.
    const std::size_t open = kSecretRefOpen.size();
    const std::string name = value.size() > open + 1 ? value.substr(open, value.size() - open - 1) : std::string();
    if (!value.starts_with(kSecretRefOpen) || !value.ends_with('}') || !valid_secret_name(name)) {
      yfail(fpath, "step \"" + printable(st.name) + "\": must be exactly one secret reference \"${secrets.NAME}\"");
    }
    st.secret_files.emplace(file, name);
    if (std::find(st.secrets.begin(), st.secrets.end(), name) == st.secrets.end()) st.secrets.push_back(name);
  }
}

}  // namespace delegate::policies::detail
