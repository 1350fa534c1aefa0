// delegate-bench: every hot path in one table, each against a reference measured in the
// same run on the same machine (docs/bench.md). Exit status 0 whatever the figures: a
// benchmark reports, it does not gate.
#include <cstdio>
#include <cstring>

#include <delegate/agent/cp_client.hpp>

#include "benches.hpp"

// `delegate-bench launch` (or seal, mask, dispatch) runs one group only, for iterating.
int main(int argc, char** argv) {
  auto want = [&](const char* g) { return argc < 2 || std::strcmp(argv[1], g) == 0; };
  delegate::agent::global_http_init();
  delegate::bench::Table t;
  if (want("seal")) delegate::bench::seal_rows(t);
  if (want("token")) delegate::bench::token_rows(t);
  if (want("pipeline")) delegate::bench::pipeline_rows(t);
  if (want("mask")) delegate::bench::mask_rows(t);
  if (want("dispatch")) delegate::bench::dispatch_rows(t);
  if (want("launch")) delegate::bench::launch_rows(t);
  if (want("footprint")) delegate::bench::footprint_rows(t);
  if (want("system")) delegate::bench::system_rows(t);
  std::printf("\n");
  const int missed = t.print();
  std::printf("\n%d target(s) missed\n", missed);
  return 0;
}
