#pragma once
#include <string>
#include <vector>

namespace delegate::agent::cli {
int run(const std::vector<std::string>& args);
int check_job(const std::vector<std::string>& args);
int identity(const std::vector<std::string>& args);
int api_key(const std::vector<std::string>& args);
// secret set NAME|list|delete NAME --config FILE (secret_cli.cpp).
int secret(const std::vector<std::string>& args);
// doctor --config FILE (doctor.cpp): exit 0 all checks pass, 1 otherwise.
int doctor(const std::vector<std::string>& args);
}  // namespace delegate::agent::cli
