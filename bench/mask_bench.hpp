#pragma once

namespace delegate::bench {
// Prints one table row: output masking MB/s against memcpy in the same run.
void masking_throughput();
}  // namespace delegate::bench
