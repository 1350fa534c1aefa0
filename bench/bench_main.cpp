// delegate-bench: every hot path in one table, each against a reference measured in the
// same run on the same machine (docs/bench.md). Exit status 0 whatever the figures: a
// benchmark reports, it does not gate.
#include <cstdio>

#include <delegate/agent/cp_client.hpp>

#include "benches.hpp"

int main() {
  delegate::agent::global_http_init();
  delegate::bench::Table t;
  delegate::bench::seal_rows(t);
  delegate::bench::token_rows(t);
  delegate::bench::pipeline_rows(t);
  delegate::bench::mask_rows(t);
  delegate::bench::dispatch_rows(t);
  delegate::bench::launch_rows(t);
  std::printf("\n");
  const int missed = t.print();
  std::printf("\n%d target(s) missed\n", missed);
  return 0;
}
