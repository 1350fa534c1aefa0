// libFuzzer target: the metrics listener's request parser. The request comes from any
// local process that can reach the listener. Whatever it is, answering must not crash,
// must always be a complete HTTP response once the input is complete, and nothing but
// GET or HEAD of /metrics may carry the exposition.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <delegate/common/metrics.hpp>
#include <delegate/common/metrics_http.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace delegate::metrics;
  static Registry registry;
  static const bool once = (registry.counter("fuzz_marker_total", "marker").inc(), true);
  (void)once;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const Endpoints endpoints{&registry, [] { return true; }};
  const auto partial = answer_request(in, endpoints, false);
  const auto full = answer_request(in, endpoints, true);
  if (full.rfind("HTTP/1.1 ", 0) != 0) std::abort();
  if (!partial.empty() && partial != full) std::abort();
  if (full.find("fuzz_marker_total") != std::string::npos &&
      in.rfind("GET /metrics", 0) != 0) std::abort();
  // A head that does not end within the limit is never served.
  const auto head_end = in.find("\r\n\r\n");
  const bool too_long = head_end == std::string_view::npos ? in.size() >= kMaxRequestBytes : head_end + 4 > kMaxRequestBytes;
  if (too_long && full.rfind("HTTP/1.1 431 ", 0) != 0) std::abort();
  return 0;
}
