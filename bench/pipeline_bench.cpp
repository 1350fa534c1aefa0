// The audit pipeline of a step's output: what the agent does with each read from the
// step's pipe (job_runner's emit: output records of at most 16 KiB, base64, JCS,
// SHA-256 chain, Ed25519, then the spool's AES-GCM block and its group-committed
// fdatasync), in MB/s of step output, against raw SHA-256 of the same bytes plus one
// Ed25519 signature per 16 KiB, in the same run.
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <delegate/agent/recorder.hpp>
#include <delegate/agent/spool.hpp>
#include <delegate/agent/uploader.hpp>
#include <delegate/audit/chain.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>

#include "benches.hpp"

namespace delegate::bench {
namespace {

// Log-like step output, read from the pipe in the supervisor's 16 KiB reads.
std::string step_output(std::size_t bytes) {
  std::string text;
  for (int i = 0; text.size() < bytes; ++i) {
    text += "2026-12-01T21:00:00Z level=info msg=\"request served\" path=/api/v1/items/" + std::to_string(i) +
            " status=200 dur_ms=12\n";
  }
  text.resize(bytes);
  return text;
}

template <class F>
double mb_per_s(std::size_t bytes, int reps, F&& f) {
  double best = 1e300;
  for (int rep = 0; rep < reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    f(rep);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return static_cast<double>(bytes) / (1 << 20) / best;
}

// job_runner's emit for one read: one output record per 16 KiB, sealed and spooled.
template <class Add>
bool emit(Add&& add, std::string_view chunk) {
  for (std::size_t off = 0; off < chunk.size(); off += audit::kMaxOutputChunk) {
    auto part = chunk.substr(off, audit::kMaxOutputChunk);
    if (!add(Json{{"step", "collect"}, {"stream", "stdout"}, {"b64", base64_encode(as_bytes(part))}})) return false;
  }
  return true;
}

// The Uploader's side of RecordSink (without its network half).
class SpoolSink final : public agent::RecordSink {
 public:
  explicit SpoolSink(agent::Spool& s) : spool_(s) {}
  Result<void> append(const audit::Record& r) override { return spool_.append(r); }
  Result<Durable> append_queued(const audit::Record& r) override {
    auto q = spool_.enqueue(r);
    if (!q) return std::unexpected(q.error());
    return Durable([q = std::move(*q)]() mutable { return q.wait(); });
  }

 private:
  agent::Spool& spool_;
};

}  // namespace

void pipeline_rows(Table& t) {
  constexpr std::size_t kRead = 16 * 1024;  // sandbox/src/supervise.cpp kChunk
  const std::string text = step_output(4u << 20);
  auto key = Ed25519PrivateKey::generate();
  SystemClock clock;
  std::size_t sink = 0;

  const double raw = mb_per_s(text.size(), 5, [&](int) {
    for (std::size_t off = 0; off < text.size(); off += audit::kMaxOutputChunk) {
      const auto part = std::string_view(text).substr(off, audit::kMaxOutputChunk);
      sink += key->sign(sha256(part))[0];
    }
  });

  // Sealing alone (records built, canonicalised, hashed, signed and serialised as the
  // spool serialises them), to tell CPU from the disk in the full row.
  const double sealed = mb_per_s(text.size(), 5, [&](int rep) {
    audit::ChainWriter w(*key, clock, "agt_bench", "job_seal_" + std::to_string(rep));
    for (std::size_t off = 0; off < text.size(); off += kRead) {
      emit([&](Json d) {
        auto r = w.append(audit::Kind::output, std::move(d));
        if (r) sink += audit::serialize(*r).size();
        return r.has_value();
      }, std::string_view(text).substr(off, kRead));
    }
  });
  t.add({.what = "audit pipeline, sealing only (record, base64, JCS, SHA-256, Ed25519, serialise)", .value = sealed,
         .unit = "MB/s", .ref_name = "SHA-256 + Ed25519 sign per 16 KiB", .ref = raw, .better = Better::higher,
         .note = "sealing: best of 5 over 4 MiB of log lines in 16 KiB reads; no spool"});

  char tmpl[] = "/var/tmp/delegate-bench-spool-XXXXXX";
  const char* made = ::mkdtemp(tmpl);
  if (made == nullptr) {
    t.skipped("audit pipeline to the spool", "mkdtemp failed");
    return;
  }
  const std::filesystem::path dir = made;
  agent::SpoolOptions opt{.dir = dir / "spool"};
  for (auto& b : opt.key.bytes) b = 7;
  auto spool = agent::Spool::open(std::move(opt));
  if (!spool) {
    t.skipped("audit pipeline to the spool", spool.error().message);
    std::filesystem::remove_all(dir);
    return;
  }
  // 1 MiB per pass: a pass costs one fdatasync per record.
  const std::string_view slice = std::string_view(text).substr(0, 1u << 20);
  bool failed = false;
  SpoolSink spool_sink(**spool);
  const double spooled = mb_per_s(slice.size(), 3, [&](int rep) {
    // The job's recorder, as job_runner drives it; the step.end at the end waits until
    // every output record before it is durable.
    agent::JobRecorder rec(*key, clock, "agt_bench", "job_spool_" + std::to_string(rep), spool_sink);
    for (std::size_t off = 0; off < slice.size(); off += kRead) {
      emit([&](Json d) { return rec.add(audit::Kind::output, std::move(d)); }, slice.substr(off, kRead));
    }
    if (!rec.add(audit::Kind::step_end, Json{{"step", "collect"}, {"index", 0}, {"status", "exited"}})) failed = true;
  });
  t.add({.what = "audit pipeline, step output to sealed, spooled records", .value = spooled, .unit = "MB/s",
         .ref_name = "SHA-256 + Ed25519 sign per 16 KiB", .ref = raw, .better = Better::higher,
         .target_on = TargetOn::ratio, .target = 0.5,
         .note = "spooled: fdatasync included as the agent does it (JobRecorder: output records queued, up to 32 "
                 "in flight, sharing the spool's group commits, default 2 ms window; the step.end after them waits "
                 "until all are durable), one step writing, /var/tmp's file system; best of 3 passes of 1 MiB"});
  (*spool)->close();
  std::filesystem::remove_all(dir);
  if (failed) std::printf("pipeline bench: a record could not be spooled (bench is broken)\n");
  if (sink == 0) std::printf("(nothing)\n");
}

}  // namespace delegate::bench
