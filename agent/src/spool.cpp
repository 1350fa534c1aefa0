#include <delegate/agent/spool.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <delegate/agent/metrics.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/log.hpp>

#include "spool_impl.hpp"

namespace delegate::agent {
namespace fmt = spoolfmt;
namespace fs = std::filesystem;
using namespace spool_detail;

namespace spool_detail {

std::string seg_name(std::uint64_t ordinal) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx.seg", static_cast<unsigned long long>(ordinal));
  return buf;
}

std::optional<std::uint64_t> seg_ordinal(const fs::path& p) {
  const auto name = p.filename().string();
  if (name.size() != 20 || name.substr(16) != ".seg") return std::nullopt;
  std::uint64_t v = 0;
  for (char c : name.substr(0, 16)) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  return v;
}

void fsync_dir(const fs::path& dir) {
  fmt::Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.valid()) ::fsync(d.get());
}

Json info_json(const StreamInfo& s) {
  return Json{{"agent", s.key.agent},   {"job", s.key.job},         {"next_seq", s.next_seq},
              {"last_hash", s.last_hash}, {"last_ts", s.last_ts},   {"acked", s.acked},
              {"ended", s.ended},         {"status", s.status},     {"end_order", s.end_order},
              {"completed", s.completed}, {"checkpointed", s.checkpointed}, {"dead", s.dead}};
}

Result<StreamInfo> info_from(const Json& j) {
  try {
    StreamInfo s;
    s.key = {j.at("agent").get<std::string>(), j.at("job").get<std::string>()};
    s.next_seq = j.at("next_seq").get<std::uint64_t>();
    s.last_hash = j.at("last_hash").get<std::string>();
    s.last_ts = j.at("last_ts").get<std::string>();
    s.acked = j.at("acked").get<std::int64_t>();
    s.ended = j.at("ended").get<bool>();
    s.status = j.at("status").get<std::string>();
    s.end_order = j.at("end_order").get<std::uint64_t>();
    s.completed = j.at("completed").get<bool>();
    s.checkpointed = j.at("checkpointed").get<bool>();
    s.dead = j.at("dead").get<bool>();
    return s;
  } catch (const std::exception& e) {
    return fail(Errc::parse, std::string("spool metadata: ") + e.what());
  }
}

}  // namespace spool_detail


bool Spool::Impl::fully_acked(const Segment& s) const {
  for (const auto& [key, run] : s.runs) {
    auto it = streams.find(key);
    if (it == streams.end()) continue;
    if (it->second.acked < static_cast<std::int64_t>(run.last_seq())) return false;
  }
  return true;
}

Result<void> Spool::Impl::save_meta_locked() {
  std::set<StreamKey> referenced;
  for (const auto& [_, s] : segs) {
    for (const auto& [k, _r] : s.runs) referenced.insert(k);
  }
  Json list = Json::array();
  for (auto it = streams.begin(); it != streams.end();) {
    const auto& s = it->second;
    const bool settled = s.key.job != audit::kAgentStreamJob && s.ended && s.completed && s.checkpointed &&
                         s.acked + 1 >= static_cast<std::int64_t>(s.next_seq) && !referenced.contains(s.key);
    if (settled) {  // nothing left to send, report or recover: forget it
      queued_next.erase(it->first);
      it = streams.erase(it);
      continue;
    }
    list.push_back(info_json(s));
    ++it;
  }
  const std::string body = Json{{"v", 1}, {"end_counter", end_counter}, {"streams", list}}.dump();
  auto r = write_file_atomic(opt.dir / kMetaFile, fmt::meta_mac_hex(opt.key.bytes, body) + "\n" + body + "\n", 0600);
  if (r) {
    meta_dirty = false;
    last_meta_save = std::chrono::steady_clock::now();
  }
  return r;
}

Result<std::vector<std::uint32_t>> Spool::Impl::write_batch(const std::vector<std::shared_ptr<Pending>>& batch) {
  if (!active_fd.valid() || active_size >= opt.segment_bytes) {
    active_fd = fmt::Fd();
    std::uint64_t ordinal = 0;
    {
      std::lock_guard lock(mu);
      ordinal = next_ordinal++;
    }
    const fs::path path = opt.dir / seg_name(ordinal);
    fmt::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600));
    if (!fd.valid()) return fail(Errc::io, "cannot create spool segment " + path.string() + ": " + std::strerror(errno));
    auto raw = random_bytes(16);
    std::copy(raw.begin(), raw.end(), active_uuid.begin());
    active_key = fmt::segment_key(opt.key.bytes, active_uuid);
    if (auto r = fmt::write_all(fd.get(), fmt::make_header(opt.key.bytes, active_uuid)); !r) return std::unexpected(r.error());
    if (::fsync(fd.get()) != 0) return fail(Errc::io, std::string("spool fsync failed: ") + std::strerror(errno));
    fsync_dir(opt.dir);
    active_fd = std::move(fd);
    active_size = fmt::kHeaderBytes;
    active_blocks = 0;
    std::lock_guard lock(mu);
    Segment seg;
    seg.path = path;
    seg.uuid = active_uuid;
    seg.key = active_key;
    seg.size = active_size;
    segs.emplace(ordinal, std::move(seg));
    used += active_size;
    active = ordinal;
  }
  std::string buf;
  std::vector<std::uint32_t> offsets;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const auto& p = *batch[i];
    offsets.push_back(static_cast<std::uint32_t>(active_size + buf.size()));
    fmt::encode_block(active_key.bytes, active_uuid,
                      fmt::BlockHead{active_blocks + static_cast<std::uint32_t>(i), fmt::kRecordBlock, p.key.agent,
                                     p.key.job, p.seq},
                      p.plaintext, buf);
  }
  auto w = fmt::write_all(active_fd.get(), buf);
  if (w && ::fdatasync(active_fd.get()) != 0) w = fail(Errc::io, std::string("spool fdatasync failed: ") + std::strerror(errno));
  if (!w) {
    // Whatever part reached the file is cut off, and the segment is not written again:
    // after a failed fsync the page cache can no longer be trusted.
    if (::ftruncate(active_fd.get(), static_cast<off_t>(active_size)) != 0) {
      log::error("agent", "cannot cut a failed spool write back: " + std::string(std::strerror(errno)));
    }
    active_fd = fmt::Fd();
    return std::unexpected(w.error());
  }
  active_size += buf.size();
  active_blocks += static_cast<std::uint32_t>(batch.size());
  return offsets;
}

void Spool::Impl::commit_locked(const std::vector<std::shared_ptr<Pending>>& batch,
                                const std::vector<std::uint32_t>& offsets) {
  Segment& seg = segs.at(*active);
  used += active_size - seg.size;
  seg.size = active_size;
  seg.blocks = active_blocks;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Pending& p = *batch[i];
    Run& run = seg.runs[p.key];
    if (run.offsets.empty()) run.first_seq = p.seq;
    run.offsets.push_back(offsets[i]);
    StreamInfo& st = streams[p.key];
    st.key = p.key;
    st.next_seq = p.seq + 1;
    st.last_hash = p.hash;
    st.last_ts = p.ts;
    if (p.job_end) {
      st.ended = true;
      st.status = p.status;
      st.end_order = ++end_counter;
    }
    queued_bytes -= p.estimate;
    p.done = true;
  }
  ++commits;
  committed_records += batch.size();
  meta_dirty = true;
}

void Spool::Impl::close_active_locked() {
  active_fd = fmt::Fd();
  active.reset();
}

void Spool::Impl::compact_locked() {
  std::vector<std::uint64_t> victims;
  for (const auto& [ordinal, seg] : segs) {
    const bool is_active = active && *active == ordinal;
    if (is_active && (writing || seg.blocks == 0)) continue;
    if (fully_acked(seg)) victims.push_back(ordinal);
  }
  if (victims.empty()) return;
  // The tails and acks must be on disk before the records that carry them disappear.
  if (auto r = save_meta_locked(); !r) {
    log::error("agent", "spool metadata not saved; keeping acknowledged segments: " + r.error().message);
    return;
  }
  for (auto ordinal : victims) {
    if (active && *active == ordinal) close_active_locked();
    auto it = segs.find(ordinal);
    std::error_code ec;
    fs::remove(it->second.path, ec);
    if (ec) log::warn("agent", "cannot delete spool segment " + it->second.path.string() + ": " + ec.message());
    used -= it->second.size;
    segs.erase(it);
  }
  full_logged = false;
  cv.notify_all();
}

void Spool::Impl::writer_loop() {
  std::unique_lock lock(mu);
  std::chrono::milliseconds retry{50};
  for (;;) {
    cv.wait(lock, [&] { return closed || !queue.empty(); });
    if (queue.empty()) return;  // closed and drained
    if (queue.size() < opt.commit_max_records && opt.commit_window.count() > 0 && !closed) {
      // Group commit: let concurrent appenders join this batch.
      cv.wait_for(lock, opt.commit_window, [&] { return closed || queue.size() >= opt.commit_max_records; });
    }
    std::vector<std::shared_ptr<Pending>> batch;
    while (!queue.empty() && batch.size() < opt.commit_max_records) {
      batch.push_back(std::move(queue.front()));
      queue.pop_front();
    }
    writing = true;
    lock.unlock();
    auto offsets = write_batch(batch);
    lock.lock();
    writing = false;
    if (!offsets) {
      if (closed) {
        for (auto& p : batch) {
          p->result = std::unexpected(offsets.error());
          p->done = true;
        }
        for (auto& p : queue) {
          p->result = std::unexpected(offsets.error());
          p->done = true;
        }
        queue.clear();
        cv.notify_all();
        return;
      }
      // Appenders keep waiting (fail closed: no record is acknowledged that is not on
      // disk) while we retry, e.g. until space is freed on a full file system.
      log::error("agent", "spool: " + offsets.error().message + "; retrying in " + std::to_string(retry.count()) + " ms");
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue.push_front(std::move(*it));
      cv.wait_for(lock, retry, [&] { return closed; });
      retry = std::min(retry * 2, std::chrono::milliseconds(5000));
      continue;
    }
    retry = std::chrono::milliseconds(50);
    commit_locked(batch, *offsets);
    compact_locked();
    ++gen;
    cv.notify_all();
  }
}

Spool::Spool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Spool::~Spool() { close(); }

Result<std::unique_ptr<Spool>> Spool::open(SpoolOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (auto r = impl->recover(); !r) return std::unexpected(r.error());
  Impl* raw = impl.get();
  impl->writer = std::thread([raw] { raw->writer_loop(); });
  return std::unique_ptr<Spool>(new Spool(std::move(impl)));
}

void Spool::close() {
  auto& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    if (m.closed && !m.writer.joinable()) return;
    m.closed = true;
  }
  m.cv.notify_all();
  if (m.writer.joinable()) m.writer.join();
  std::lock_guard lock(m.mu);
  m.close_active_locked();
  if (auto r = m.save_meta_locked(); !r) log::error("agent", "spool metadata not saved: " + r.error().message);
}

Result<void> Spool::append(const audit::Record& record) {
  auto q = enqueue(record);
  if (!q) return std::unexpected(q.error());
  return q->wait();
}

Result<void> Spool::Queued::wait() {
  auto& m = *spool_->impl_;
  std::unique_lock lock(m.mu);
  m.cv.wait(lock, [&] { return p_->done; });
  if (p_->result) agent_metrics().records_spooled(1);
  return p_->result;
}

Result<Spool::Queued> Spool::enqueue(const audit::Record& record) {
  auto& m = *impl_;
  auto p = std::make_shared<Pending>();
  p->key = {record.agent, record.job};
  p->seq = record.seq;
  p->plaintext = audit::serialize(record);
  p->hash = record.hash;
  p->ts = record.ts;
  p->job_end = record.kind == audit::Kind::job_end;
  if (p->job_end) p->status = record.data.value("status", std::string());
  p->estimate = p->plaintext.size() + kBlockOverhead + record.agent.size() + record.job.size();
  std::unique_lock lock(m.mu);
  auto [qn, fresh] = m.queued_next.try_emplace(p->key, 0);
  if (fresh) {
    if (auto it = m.streams.find(p->key); it != m.streams.end()) qn->second = it->second.next_seq;
  }
  if (record.seq != qn->second) {
    return fail(Errc::conflict, "spool: record seq " + std::to_string(record.seq) + " of job " + record.job +
                                    " is not the next one (" + std::to_string(qn->second) + ")");
  }
  auto fits = [&] { return m.closed || m.quota_lifted || m.used + m.queued_bytes == 0 || m.used + m.queued_bytes + p->estimate <= m.opt.max_bytes; };
  if (!fits() && !m.full_logged) {
    m.full_logged = true;
    log::warn("agent", "spool is full (" + std::to_string(m.used) + " of " + std::to_string(m.opt.max_bytes) +
                           " bytes): record writers wait until the control plane acknowledges records");
  }
  ++m.waiting_for_space;
  m.cv.wait(lock, fits);
  --m.waiting_for_space;
  if (m.closed) return fail(Errc::unavailable, "spool is closed");
  ++qn->second;
  m.queued_bytes += p->estimate;
  m.queue.push_back(p);
  m.cv.notify_all();
  return Queued(*this, std::move(p));
}

Result<std::vector<std::string>> Spool::read(const StreamKey& stream, std::uint64_t from_seq, std::size_t max_records,
                                             std::size_t max_bytes) const {
  struct Loc {
    fs::path path;
    fmt::Uuid uuid;
    fmt::SecretKey key;
    std::vector<std::pair<std::uint64_t, std::uint32_t>> items;  // seq, offset
  };
  std::vector<Loc> plan;
  {
    std::lock_guard lock(impl_->mu);
    std::size_t n = 0;
    for (const auto& [_, seg] : impl_->segs) {
      auto it = seg.runs.find(stream);
      if (it == seg.runs.end() || it->second.last_seq() < from_seq) continue;
      Loc loc{seg.path, seg.uuid, seg.key, {}};
      for (std::uint64_t s = std::max(from_seq, it->second.first_seq); s <= it->second.last_seq() && n < max_records; ++s, ++n) {
        loc.items.emplace_back(s, it->second.offsets[s - it->second.first_seq]);
      }
      if (!loc.items.empty()) plan.push_back(std::move(loc));
      if (n >= max_records) break;
    }
  }
  std::vector<std::string> out;
  std::size_t bytes = 0;
  for (const auto& loc : plan) {
    fmt::Fd fd(::open(loc.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return fail(Errc::io, "cannot open spool segment " + loc.path.string() + ": " + std::strerror(errno));
    for (const auto& [seq, off] : loc.items) {
      auto len = fmt::pread_exact(fd.get(), off, 4);
      if (!len) return std::unexpected(len.error());
      const auto* b = reinterpret_cast<const std::uint8_t*>(len->data());
      const std::uint32_t n = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
      if (n == 0 || n > fmt::kMaxBlockBytes) return fail(Errc::crypto, "spool block length corrupted in " + loc.path.string());
      auto body = fmt::pread_exact(fd.get(), off + 4, n);
      if (!body) return std::unexpected(body.error());
      fmt::BlockHead head;
      auto plain = fmt::decode_block(loc.key.bytes, loc.uuid, *body, head);
      if (!plain) return fail(Errc::crypto, loc.path.string() + ": " + plain.error().message);
      if (head.agent != stream.agent || head.job != stream.job || head.seq != seq) {
        return fail(Errc::crypto, loc.path.string() + ": block does not hold the indexed record");
      }
      if (!out.empty() && bytes + plain->size() > max_bytes) return out;
      bytes += plain->size();
      out.push_back(std::move(*plain));
    }
  }
  return out;
}

void Spool::ack(const StreamKey& stream, std::int64_t seq) {
  auto& m = *impl_;
  std::lock_guard lock(m.mu);
  auto it = m.streams.find(stream);
  if (it == m.streams.end()) return;
  seq = std::min<std::int64_t>(seq, static_cast<std::int64_t>(it->second.next_seq) - 1);
  if (seq <= it->second.acked) return;
  it->second.acked = seq;
  m.meta_dirty = true;
  m.compact_locked();
  ++m.gen;
  m.cv.notify_all();
}

Result<void> Spool::dead_letter(const StreamKey& stream) {
  auto info = this->stream(stream);
  if (!info) return fail(Errc::not_found, "no such spool stream");
  auto& m = *impl_;
  fmt::Uuid uuid{};
  auto raw = random_bytes(16);
  std::copy(raw.begin(), raw.end(), uuid.begin());
  const fs::path path = m.opt.dir / "dead" / (stream.job + "-" + hex_encode(raw).substr(0, 12) + ".seg");
  fmt::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return fail(Errc::io, "cannot create " + path.string() + ": " + std::strerror(errno));
  auto key = fmt::segment_key(m.opt.key.bytes, uuid);
  std::string buf = fmt::make_header(m.opt.key.bytes, uuid);
  std::uint64_t next = static_cast<std::uint64_t>(info->acked + 1);
  std::uint32_t index = 0;
  for (;;) {
    auto recs = read(stream, next, 256, 4u << 20);
    if (!recs) return std::unexpected(recs.error());
    if (recs->empty()) break;
    for (const auto& r : *recs) {
      fmt::encode_block(key.bytes, uuid, fmt::BlockHead{index++, fmt::kRecordBlock, stream.agent, stream.job, next++}, r, buf);
    }
  }
  if (auto r = fmt::write_all(fd.get(), buf); !r) return r;
  if (::fsync(fd.get()) != 0) return fail(Errc::io, "cannot fsync " + path.string());
  fsync_dir(path.parent_path());
  log::error("agent", "records " + std::to_string(info->acked + 1) + ".." + std::to_string(next - 1) + " of job " +
                          stream.job + " kept in " + path.string() + " (not sent)");
  std::lock_guard lock(m.mu);
  auto it = m.streams.find(stream);
  it->second.dead = true;
  it->second.acked = std::max<std::int64_t>(it->second.acked, static_cast<std::int64_t>(next) - 1);
  m.meta_dirty = true;
  m.compact_locked();
  ++m.gen;
  m.cv.notify_all();
  return m.save_meta_locked();
}

bool Spool::wait_acked(const StreamKey& stream, std::uint64_t seq, std::chrono::steady_clock::time_point deadline) const {
  auto& m = *impl_;
  std::unique_lock lock(m.mu);
  auto state = [&]() -> int {  // 1 acked, -1 dead, 0 waiting
    auto it = m.streams.find(stream);
    if (it == m.streams.end()) return 0;
    if (it->second.dead) return -1;
    return it->second.acked >= static_cast<std::int64_t>(seq) ? 1 : 0;
  };
  m.cv.wait_until(lock, deadline, [&] { return state() != 0 || m.closed; });
  return state() == 1;
}

std::vector<StreamInfo> Spool::streams() const {
  std::lock_guard lock(impl_->mu);
  std::vector<StreamInfo> out;
  for (const auto& [_, s] : impl_->streams) out.push_back(s);
  return out;
}

std::optional<StreamInfo> Spool::stream(const StreamKey& key) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->streams.find(key);
  if (it == impl_->streams.end()) return std::nullopt;
  return it->second;
}

std::vector<StreamInfo> Spool::pending() const {
  std::lock_guard lock(impl_->mu);
  std::vector<StreamInfo> out;
  for (const auto& [_, s] : impl_->streams) {
    if (s.acked + 1 < static_cast<std::int64_t>(s.next_seq)) out.push_back(s);
  }
  return out;
}

std::uint64_t Spool::wait_change(std::uint64_t seen, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [&] { return impl_->gen != seen; });
  return impl_->gen;
}

void Spool::wake() {
  {
    std::lock_guard lock(impl_->mu);
    ++impl_->gen;
  }
  impl_->cv.notify_all();
}

void Spool::mark_completed(const StreamKey& stream) {
  std::lock_guard lock(impl_->mu);
  if (auto it = impl_->streams.find(stream); it != impl_->streams.end()) it->second.completed = true;
  if (auto r = impl_->save_meta_locked(); !r) log::warn("agent", "spool metadata not saved: " + r.error().message);
}

void Spool::mark_checkpointed(const std::vector<StreamKey>& list) {
  std::lock_guard lock(impl_->mu);
  for (const auto& k : list) {
    if (auto it = impl_->streams.find(k); it != impl_->streams.end()) it->second.checkpointed = true;
  }
  if (auto r = impl_->save_meta_locked(); !r) log::warn("agent", "spool metadata not saved: " + r.error().message);
}

Result<void> Spool::flush_meta() {
  std::lock_guard lock(impl_->mu);
  if (!impl_->meta_dirty || std::chrono::steady_clock::now() - impl_->last_meta_save < std::chrono::seconds(1)) return ok();
  return impl_->save_meta_locked();
}

void Spool::lift_quota() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->quota_lifted = true;
  }
  impl_->cv.notify_all();
}

SpoolStats Spool::stats() const {
  std::lock_guard lock(impl_->mu);
  return SpoolStats{impl_->commits, impl_->committed_records, impl_->waiting_for_space, impl_->segs.size()};
}

std::uint64_t Spool::bytes_used() const {
  std::lock_guard lock(impl_->mu);
  return impl_->used;
}

}  // namespace delegate::agent
