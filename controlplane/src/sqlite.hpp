#pragma once
// Minimal RAII over sqlite3 prepared statements; internal to the control plane.
#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <delegate/common/error.hpp>

namespace delegate::controlplane::sql {

class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr) != SQLITE_OK) {
      error_ = sqlite3_errmsg(db);
      stmt_ = nullptr;
    }
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  [[nodiscard]] bool ok() const { return stmt_ != nullptr; }
  [[nodiscard]] const std::string& error() const { return error_; }

  Stmt& bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }

  // SQLITE_ROW -> true, SQLITE_DONE -> false, anything else -> error.
  [[nodiscard]] Result<bool> step() {
    if (!stmt_) return fail(Errc::internal, "sqlite prepare failed: " + error_);
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return fail(Errc::io, std::string("sqlite: ") + sqlite3_errmsg(db_));
  }
  [[nodiscard]] Result<void> run() {
    auto r = step();
    if (!r) return std::unexpected(r.error());
    return {};
  }

  [[nodiscard]] std::string text(int col) const {
    auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }
  [[nodiscard]] std::int64_t i64(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string error_;
};

[[nodiscard]] inline Result<void> exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return fail(Errc::io, "sqlite: " + msg);
  }
  return {};
}

// BEGIN IMMEDIATE ... COMMIT, rolled back unless commit() succeeded. Inside a group
// commit's open batch (group_commit.hpp) it is a savepoint of that batch instead: a
// failed request undoes only its own writes, and its "commit" becomes durable with the
// batch, before any answer is written.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db), nested_(sqlite3_get_autocommit(db) == 0) {
    began_ = exec(db, nested_ ? "SAVEPOINT request" : "BEGIN IMMEDIATE").has_value();
  }
  ~Transaction() {
    if (!began_ || done_) return;
    if (nested_) {
      (void)exec(db_, "ROLLBACK TO request");
      (void)exec(db_, "RELEASE request");
    } else {
      (void)exec(db_, "ROLLBACK");
    }
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  [[nodiscard]] bool began() const { return began_; }
  [[nodiscard]] Result<void> commit() {
    auto r = exec(db_, nested_ ? "RELEASE request" : "COMMIT");
    if (r) done_ = true;
    return r;
  }

 private:
  sqlite3* db_;
  bool nested_;
  bool began_ = false;
  bool done_ = false;
};

}  // namespace delegate::controlplane::sql
