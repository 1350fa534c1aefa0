// Spool recovery at start: metadata, then every segment (torn tails truncated, every
// block authenticated), then the chain tail of each stream.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <delegate/audit/record.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/log.hpp>

#include "spool_impl.hpp"

namespace delegate::agent {
namespace fmt = spoolfmt;
namespace fs = std::filesystem;
using namespace spool_detail;

Result<void> Spool::Impl::recover() {
  if (auto r = ensure_dir(opt.dir, 0700); !r) return r;
  if (auto r = ensure_dir(opt.dir / "dead", 0700); !r) return r;
  // 1. Metadata (acks, flags, tails of compacted streams).
  if (auto text = read_file(opt.dir / kMetaFile, 64u << 20); text) {
    auto nl = text->find('\n');
    std::string body = nl == std::string::npos ? "" : text->substr(nl + 1);
    while (!body.empty() && body.back() == '\n') body.pop_back();
    if (nl == std::string::npos || text->substr(0, nl) != fmt::meta_mac_hex(opt.key.bytes, body)) {
      return fail(Errc::crypto, "spool metadata " + (opt.dir / kMetaFile).string() +
                                    " fails authentication (wrong spool key, or tampered)");
    }
    auto j = parse_json_strict(body, JsonLimits{.max_bytes = 64u << 20, .max_depth = 8});
    if (!j || !j->is_object() || !(*j)["streams"].is_array()) return fail(Errc::parse, "spool metadata is malformed");
    end_counter = (*j).value("end_counter", std::uint64_t{0});
    for (const auto& e : (*j)["streams"]) {
      auto s = info_from(e);
      if (!s) return std::unexpected(s.error());
      streams[s->key] = *s;
    }
  } else if (text.error().code != Errc::not_found) {
    return std::unexpected(text.error());
  }

  // 2. Segments, oldest first. Every block is authenticated now, so corruption is found
  // at start rather than when the record is finally needed.
  std::map<std::uint64_t, fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(opt.dir, ec)) {
    if (auto o = seg_ordinal(e.path()); o && e.is_regular_file()) files[*o] = e.path();
  }
  if (ec) return fail(Errc::io, "cannot list spool " + opt.dir.string() + ": " + ec.message());
  std::map<StreamKey, std::uint64_t> seen_next;
  std::map<StreamKey, std::uint64_t> first_seq;
  std::map<StreamKey, std::string> last_plain;
  for (const auto& [ordinal, path] : files) {
    next_ordinal = std::max(next_ordinal, ordinal + 1);
    auto data = read_file(path, 1ull << 32);
    if (!data) return std::unexpected(data.error());
    const std::string where = "spool segment " + path.string();
    if (data->size() < fmt::kHeaderBytes) {
      // Crashed while creating it: no block was ever acknowledged from it.
      fs::remove(path, ec);
      continue;
    }
    auto uuid = fmt::parse_header(opt.key.bytes, std::string_view(*data).substr(0, fmt::kHeaderBytes));
    if (!uuid) return fail(uuid.error().code, where + ": " + uuid.error().message);
    Segment seg;
    seg.path = path;
    seg.uuid = *uuid;
    seg.key = fmt::segment_key(opt.key.bytes, *uuid);
    std::size_t off = fmt::kHeaderBytes;
    std::uint32_t index = 0;
    const std::string_view all(*data);
    while (off < all.size()) {
      if (all.size() - off < 4) break;  // torn length prefix
      const std::uint32_t len = (static_cast<std::uint32_t>(static_cast<std::uint8_t>(all[off])) << 24) |
                                (static_cast<std::uint32_t>(static_cast<std::uint8_t>(all[off + 1])) << 16) |
                                (static_cast<std::uint32_t>(static_cast<std::uint8_t>(all[off + 2])) << 8) |
                                static_cast<std::uint32_t>(static_cast<std::uint8_t>(all[off + 3]));
      if (len == 0 || len > fmt::kMaxBlockBytes) {
        // A file system may leave zeros after a crash; anything else is corruption.
        if (all.substr(off).find_first_not_of('\0') == std::string_view::npos) break;
        return fail(Errc::crypto, where + ": corrupt block length at offset " + std::to_string(off));
      }
      if (off + 4 + len > all.size()) break;  // torn tail: the write never completed
      fmt::BlockHead head;
      auto plain = fmt::decode_block(seg.key.bytes, seg.uuid, all.substr(off + 4, len), head);
      if (!plain) {
        return fail(Errc::crypto, where + ": block at offset " + std::to_string(off) + " fails authentication");
      }
      if (head.index != index) {
        return fail(Errc::crypto, where + ": block at offset " + std::to_string(off) + " is out of place");
      }
      StreamKey key{head.agent, head.job};
      Run& run = seg.runs[key];
      if (run.offsets.empty()) {
        run.first_seq = head.seq;
        if (auto s = seen_next.find(key); s != seen_next.end() && s->second != head.seq) {
          return fail(Errc::crypto, where + ": job " + head.job + " continues at seq " + std::to_string(head.seq) +
                                        ", expected " + std::to_string(s->second));
        }
        first_seq.try_emplace(key, head.seq);
      } else if (head.seq != run.last_seq() + 1) {
        return fail(Errc::crypto, where + ": job " + head.job + " seq " + std::to_string(head.seq) + " out of order");
      }
      run.offsets.push_back(static_cast<std::uint32_t>(off));
      seen_next[key] = head.seq + 1;
      last_plain[key] = std::move(*plain);
      off += 4 + len;
      ++index;
    }
    if (off < all.size()) {
      fmt::Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd.valid() || ::ftruncate(fd.get(), static_cast<off_t>(off)) != 0 || ::fdatasync(fd.get()) != 0) {
        return fail(Errc::io, where + ": cannot truncate torn tail: " + std::strerror(errno));
      }
      log::warn("agent", where + ": truncated a torn tail of " + std::to_string(all.size() - off) + " bytes");
    }
    seg.size = off;
    seg.blocks = index;
    used += off;
    segs.emplace(ordinal, std::move(seg));
  }

  // 3. Chain tails from the newest spooled record of each stream.
  for (auto& [key, plain] : last_plain) {
    auto rec = audit::parse_record(plain);
    if (!rec || rec->agent != key.agent || rec->job != key.job || rec->seq + 1 != seen_next[key]) {
      return fail(Errc::crypto, "spool record of job " + key.job + " does not match its block");
    }
    StreamInfo& st = streams[key];
    st.key = key;
    if (seen_next[key] < st.next_seq) {
      return fail(Errc::conflict, "spool lost records of job " + key.job + ": has up to seq " +
                                      std::to_string(seen_next[key] - 1) + ", metadata says " +
                                      std::to_string(st.next_seq - 1));
    }
    st.next_seq = seen_next[key];
    st.last_hash = rec->hash;
    st.last_ts = rec->ts;
    st.acked = std::max<std::int64_t>(st.acked, static_cast<std::int64_t>(first_seq[key]) - 1);
    if (rec->kind == audit::Kind::job_end && !st.ended) {
      st.ended = true;
      st.status = rec->data.value("status", std::string());
      st.end_order = ++end_counter;
    }
  }
  for (const auto& [key, st] : streams) {
    if (!seen_next.contains(key) && st.acked + 1 < static_cast<std::int64_t>(st.next_seq) && !st.dead) {
      return fail(Errc::conflict, "spool lost unacknowledged records of job " + key.job);
    }
  }
  return ok();
}

}  // namespace delegate::agent
