#pragma once
// For a process that makes one launch and exits (`sandbox-run`).

namespace delegate::sandbox {

// Keep no pool of network namespaces (docs/sandbox.md). Otherwise the first launch
// starts the pool's thread, which makes four namespaces the process never uses, on the
// only launch's path. Call before the first launch; the launch then creates its
// namespace in clone().
void disable_netns_pool();

}  // namespace delegate::sandbox
