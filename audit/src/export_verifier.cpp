#include <delegate/audit/export_verifier.hpp>

#include <utility>

namespace delegate::audit {
namespace {

RecordFault make_fault(Fault f, std::uint64_t seq, std::string detail) {
  return RecordFault{f, seq, std::move(detail)};
}

// Untrusted ids are echoed in messages; keep them short.
std::string clip(const std::string& s) { return s.size() > 64 ? s.substr(0, 64) + "..." : s; }

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t\r") == std::string_view::npos; }

// Reads one line of at most kMaxRecordBytes; longer lines are consumed but flagged, so
// a hostile file cannot make the verifier buffer gigabytes. Returns false at end of input.
bool read_bounded_line(std::istream& in, std::string& line, bool& too_long) {
  line.clear();
  too_long = false;
  std::streambuf* sb = in.rdbuf();
  if (sb == nullptr) return false;
  bool any = false;
  for (;;) {
    const int c = sb->sbumpc();
    if (c == std::char_traits<char>::eof()) {
      in.setstate(std::ios::eofbit);
      return any;
    }
    any = true;
    if (c == '\n') break;
    if (line.size() < kMaxRecordBytes + 1) {
      line.push_back(static_cast<char>(c));
    } else {
      too_long = true;
    }
  }
  return true;
}

}  // namespace

ExportVerifier::ExportVerifier(const Ed25519PublicKey& key, VerifyOptions options)
    : key_(key), options_(options) {}

bool ExportVerifier::report(std::string job, RecordFault f) {
  if (!fault_) {
    std::uint64_t done = 0;
    if (auto it = streams_.find(job); it != streams_.end()) done = it->second.count();
    fault_ = JobVerdict{job.empty() ? std::string("unknown") : clip(job), done, std::move(f)};
  }
  return false;
}

bool ExportVerifier::push_line(std::string_view line) {
  if (fault_) return false;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (is_blank(line)) return true;
  ++lines_;
  try {
    // Until the line parses, attribute problems to the stream of the previous record,
    // at its next seq: that is where a torn or garbled line sits.
    std::string job_hint = last_job_;
    std::uint64_t seq_hint = 0;
    if (auto it = streams_.find(job_hint); it != streams_.end()) seq_hint = it->second.count();
    if (line.size() > kMaxRecordBytes) {
      return report(job_hint, make_fault(Fault::malformed, seq_hint,
                                         "line longer than " + std::to_string(kMaxRecordBytes) + " bytes"));
    }
    auto j = parse_json_strict(line, JsonLimits{.max_bytes = kMaxRecordBytes, .max_depth = 32});
    if (!j) return report(job_hint, make_fault(Fault::malformed, seq_hint, j.error().message));
    if (j->is_object()) {
      if (auto it = j->find("job"); it != j->end() && it->is_string()) job_hint = it->get<std::string>();
      if (auto it = j->find("seq"); it != j->end() && it->is_number_unsigned()) seq_hint = it->get<std::uint64_t>();
      // Checked before the member validation so that a future format is reported as
      // such rather than as garbage.
      if (auto it = j->find("v"); it != j->end() && it->is_number() && *it != Json(kRecordVersion)) {
        return report(job_hint, make_fault(Fault::bad_version, seq_hint, "record version " + it->dump() + ", expected 1"));
      }
    }
    auto r = record_from_json(*j);
    if (!r) return report(job_hint, make_fault(Fault::malformed, seq_hint, r.error().message));
    return push(*r);
  } catch (const std::exception& e) {
    return report(last_job_, make_fault(Fault::malformed, 0, std::string("record rejected: ") + e.what()));
  }
}

bool ExportVerifier::push(const Record& r) {
  if (fault_) return false;
  // An export is one agent's: the pinned key is one agent's identity. The first record
  // names the agent (and is then checked against the key like any other).
  if (agent_.empty()) agent_ = r.agent;
  if (r.agent != agent_) {
    return report(r.job, make_fault(Fault::foreign_record, r.seq,
                                    "record of agent \"" + clip(r.agent) + "\" in an export of agent \"" + agent_ + "\""));
  }
  auto [it, inserted] = streams_.try_emplace(r.job, key_);
  if (inserted) order_.push_back(r.job);
  last_job_ = r.job;
  const bool agent_stream = r.job == kAgentStreamJob;
  if (auto f = it->second.push(r)) {
    if (inserted && f->fault == Fault::gap) {
      // Either the stream's first records were deleted, or this record was copied in
      // from a part of the stream that is not in the export.
      f->detail = "the first record of " + clip(r.job) + " in the export is seq " + std::to_string(r.seq) +
                  ", expected 0";
    }
    // The agent stream's chain is what vouches for everything else, so its breaks get
    // their own name: a deleted checkpoint is not a job's problem.
    if (agent_stream && (f->fault == Fault::broken_chain || f->fault == Fault::gap)) {
      f->detail = std::string(to_string(f->fault)) + ": " + f->detail;
      f->fault = Fault::checkpoint_chain_broken;
    }
    return report(r.job, std::move(*f));
  }
  if (agent_stream) {
    if (auto f = check_agent_record(r)) return report(r.job, std::move(*f));
  }
  return true;
}

// Runs on an agent-stream record whose hash, signature and place in the chain are
// already verified: what is left are the key holder's own claims.
std::optional<RecordFault> ExportVerifier::check_agent_record(const Record& r) {
  const std::string seq_text = std::to_string(r.seq);
  switch (r.kind) {
    case Kind::agent_start: {
      auto start = parse_agent_start_data(r.data);
      if (!start) return make_fault(Fault::malformed, r.seq, start.error().message);
      if (start->public_key != key_) {
        // Signed by the pinned key yet announcing another: the agent's identity changed
        // under the same history, or a signer is lying about which key it is.
        return make_fault(Fault::key_mismatch, r.seq,
                          "agent.start announces public key " + base64_encode(start->public_key) +
                              ", the pinned key is " + base64_encode(key_));
      }
      // A restart always draws a new boot id; the same one again is a replayed start.
      if (booted_ && start->boot_id == boot_id_) {
        return make_fault(Fault::duplicate, r.seq, "agent.start repeats boot id " + boot_id_);
      }
      // No agent.stop before it is fine: that is a restart after a crash.
      booted_ = true;
      stopped_ = false;
      boot_id_ = std::move(start->boot_id);
      return std::nullopt;
    }
    case Kind::agent_stop: {
      if (!booted_ || stopped_) {
        return make_fault(Fault::misplaced_kind, r.seq,
                          booted_ ? "agent.stop after agent.stop" : "agent.stop before any agent.start");
      }
      auto stop = parse_agent_stop_data(r.data);
      if (!stop) return make_fault(Fault::malformed, r.seq, stop.error().message);
      if (stop->boot_id != boot_id_) {
        return make_fault(Fault::foreign_record, r.seq,
                          "agent.stop of boot " + stop->boot_id + " during boot " + boot_id_);
      }
      stopped_ = true;
      return std::nullopt;
    }
    case Kind::checkpoint: {
      if (!booted_ || stopped_) {
        return make_fault(Fault::misplaced_kind, r.seq,
                          booted_ ? "checkpoint after agent.stop" : "checkpoint before any agent.start");
      }
      auto cp = parse_checkpoint_data(r.data);
      if (!cp) return make_fault(Fault::malformed, r.seq, cp.error().message);
      if (cp->boot_id != boot_id_) {
        return make_fault(Fault::foreign_record, r.seq,
                          "checkpoint of boot " + cp->boot_id + " during boot " + boot_id_);
      }
      for (auto& job : cp->jobs) {
        auto [at, fresh] = listed_at_.try_emplace(job.job, listed_.size());
        if (!fresh) {
          const Listed& before = listed_[at->second];
          // An agent killed between writing a checkpoint and persisting that it did
          // lists the same jobs again after its restart. That repeats a claim without
          // changing it, so it is accepted once per later boot and only if identical.
          const bool same = before.job.records == job.records && before.job.last_hash == job.last_hash &&
                            before.job.status == job.status;
          if (same && before.boot_id != boot_id_) continue;
          return make_fault(Fault::duplicate, r.seq,
                            "job " + clip(job.job) + " already listed by the checkpoint at seq " +
                                std::to_string(before.checkpoint_seq));
        }
        listed_.push_back(Listed{std::move(job), r.seq, boot_id_});
      }
      return std::nullopt;
    }
    case Kind::job_received:
    case Kind::authz_decision:
    case Kind::step_start:
    case Kind::output:
    case Kind::step_end:
    case Kind::net_connect:
    case Kind::job_end:
      // ChainVerifier already refuses job kinds in the agent stream.
      return make_fault(Fault::misplaced_kind, r.seq, "kind " + std::string(to_string(r.kind)) + " in the agent stream");
  }
  return make_fault(Fault::malformed, r.seq, "unknown kind at seq " + seq_text);
}

// Every job a checkpoint lists must be in the export exactly as listed. Reported at the
// seq of the job.end the checkpoint vouches for (records - 1), in checkpoint order.
std::optional<JobVerdict> ExportVerifier::cross_check() const {
  for (const auto& l : listed_) {
    const auto& want = l.job;
    const std::uint64_t end_seq = want.records - 1;
    const std::string where = "checkpoint at _agent seq=" + std::to_string(l.checkpoint_seq);
    auto it = streams_.find(want.job);
    if (it == streams_.end()) {
      return JobVerdict{clip(want.job), 0,
                        make_fault(Fault::job_missing, end_seq,
                                   where + " lists " + std::to_string(want.records) +
                                       " records; the export holds none of them")};
    }
    const auto& got = it->second;
    if (!got.ended()) {
      // Reached only with allow_incomplete: a listed job finished, so it must be whole.
      const std::uint64_t last = got.count() == 0 ? 0 : got.count() - 1;
      return JobVerdict{clip(want.job), got.count(),
                        make_fault(Fault::truncated, last,
                                   "stream ends at seq " + std::to_string(last) + " without job.end, but " + where +
                                       " lists it finished with " + std::to_string(want.records) + " records")};
    }
    std::string differs;
    if (got.count() != want.records) {
      differs = "record count: " + where + " lists " + std::to_string(want.records) + ", the export has " +
                std::to_string(got.count());
    } else if (got.last_hash() != want.last_hash) {
      differs = "last hash: " + where + " lists " + want.last_hash + ", job.end has " + got.last_hash();
    } else if (got.final_status() != want.status) {
      differs = "status: " + where + " lists " + want.status + ", job.end has " + clip(got.final_status());
    }
    if (!differs.empty()) {
      return JobVerdict{clip(want.job), got.count(), make_fault(Fault::job_mismatch, end_seq, differs)};
    }
  }
  return std::nullopt;
}

bool ExportVerifier::read(std::istream& in) {
  std::string line;
  bool too_long = false;
  while (!fault_ && read_bounded_line(in, line, too_long)) {
    if (too_long) {
      ++lines_;
      std::uint64_t seq = 0;
      if (auto it = streams_.find(last_job_); it != streams_.end()) seq = it->second.count();
      return report(last_job_, make_fault(Fault::malformed, seq,
                                          "line longer than " + std::to_string(kMaxRecordBytes) + " bytes"));
    }
    push_line(line);
  }
  return !fault_;
}

std::vector<JobVerdict> ExportVerifier::finish() {
  if (!fault_) {
    // Completeness first: a job cut short is "truncated" even when a checkpoint lists
    // it, which is the more precise name for what happened to it.
    for (const auto& job : order_) {
      const auto& chain = streams_.at(job);
      if (auto f = chain.finish(options_.allow_incomplete)) {
        report(job, std::move(*f));
        break;
      }
    }
  }
  if (!fault_) {
    if (auto f = cross_check()) fault_ = std::move(*f);
  }
  if (fault_) return {*fault_};
  std::vector<JobVerdict> out;
  for (const auto& job : order_) out.push_back(JobVerdict{job, streams_.at(job).count(), std::nullopt});
  return out;
}

std::vector<JobVerdict> verify_export(std::istream& in, const Ed25519PublicKey& key, const VerifyOptions& options) {
  ExportVerifier v(key, options);
  try {
    v.read(in);
  } catch (const std::exception& e) {
    if (!v.failed()) {
      // Only an allocation failure can get here; report it rather than crash.
      return {JobVerdict{"unknown", 0, make_fault(Fault::malformed, 0, std::string("read failed: ") + e.what())}};
    }
  }
  return v.finish();
}

}  // namespace delegate::audit
