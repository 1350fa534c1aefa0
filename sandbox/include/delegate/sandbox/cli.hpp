#pragma once
// `delegate-agent sandbox-run [--profile NAME|FILE] [--network] [--timeout S]
//  [--memory-mb N] [--pids N] [--ro PATH]… [--rw PATH]… -- PROGRAM [ARGS…]`
// Same code path as a runbook step; stdout/stderr of the program are passed through.
namespace delegate::sandbox {

// argv[0] is "sandbox-run". Returns the process exit status (see exit_status()).
int sandbox_run_main(int argc, char** argv);

}  // namespace delegate::sandbox
