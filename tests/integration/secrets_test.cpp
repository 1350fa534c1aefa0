// Secrets end to end: the real agent resolves a secret from its local store and from
// systemd credentials, the step prints it in every encoding the masker knows and split
// across writes, and neither the exported (signed) records nor the agent's log carry
// any of those forms; a secret that cannot be resolved fails the step closed.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>

#include <delegate/common/encoding.hpp>
#include <delegate/connectors/masker.hpp>

#include "harness.hpp"

namespace delegate::testing {
namespace {

// Needs quoting in JSON, percent-encoding in URLs and has no base64-friendly length.
const std::string kLocal = "tok/3f9a \"0c7e\"+S3CR3T";
const std::string kSystemd = "sd-cred:9b1e44d0aa/zz";

// Prints the secret in each form on its own line (prefixed "form:"), then once split
// across two writes, on stdout and stderr.
const char* kPrinter = R"(import base64, binascii, json, os, sys, urllib.parse
for name in ("TOKEN", "CRED"):
    v = os.environ[name].encode()
    forms = [v, binascii.hexlify(v), binascii.hexlify(v).upper(),
             base64.b64encode(v), base64.b64encode(b"x" + v), base64.b64encode(b"xy" + v),
             base64.urlsafe_b64encode(v), base64.urlsafe_b64encode(b"x" + v), base64.urlsafe_b64encode(b"xy" + v),
             urllib.parse.quote(v, safe="").encode(), urllib.parse.quote_plus(v).encode(),
             json.dumps(v.decode())[1:-1].encode(), json.dumps(v.decode(), ensure_ascii=True)[1:-1].encode()]
    for f in forms:
        sys.stdout.buffer.write(b"form:" + f + b"\n")
        sys.stdout.buffer.flush()
    h = len(v) // 2
    for out in (sys.stdout.buffer, sys.stderr.buffer):
        out.write(b"split:" + v[:h])
        out.flush()
        out.write(v[h:] + b"\n")
        out.flush()
print("done")
)";

std::string indent(const std::string& text, const std::string& pad) {
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto nl = text.find('\n', start);
    out += pad + text.substr(start, nl - start) + "\n";
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return out;
}

std::string decoded_output(const std::vector<Json>& recs, const std::string& stream) {
  std::string out;
  for (const auto& r : recs) {
    if (r["kind"] == "output" && r["data"]["stream"] == stream) {
      auto b = base64_decode(r["data"]["b64"].get<std::string>());
      if (b) out.append(b->begin(), b->end());
    }
  }
  return out;
}

TEST(Secrets, EveryEncodingIsMaskedInRecordsAndLogsAndTheJobSucceeds) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  const auto cfg = (cp.dir() / "agent.yaml").string();
  write_text(cfg, read_text(cfg) + "secrets: {providers: [local, systemd]}\n", 0600);
  // Outside /tmp (steps have their own): a directory the step's read-only host view would
  // show, unless the agent hides it as it must.
  const fs::path creds = "/var/tmp/delegate-secrets-it-" + std::to_string(::getpid());
  fs::remove_all(creds);
  fs::create_directories(creds);
  fs::permissions(creds, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{creds};
  write_text(creds / "CRED", kSystemd + "\n", 0644);
  write_text(creds / "PROBE", "visible", 0644);
  write_text(creds / "SHORT", "pw12345", 0600);
  write_text(cp.dir() / "runbooks" / "leaky.yaml",
             "name: leaky\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: print\n    uses: script\n    with:\n      interpreter: [/usr/bin/python3]\n      script: |\n" +
                 indent(kPrinter, "        ") + "        print(\"creds-\" + (\"visible\" if os.path.exists(\"" +
                 (creds / "PROBE").string() + "\") else \"hidden\"))\n" +
                 "    env: {TOKEN: \"${secrets.API_TOKEN}\", CRED: \"${secrets.CRED}\"}\n"
                 "    sandbox: {timeout_s: 30, memory_mb: 256}\n");
  write_text(cp.dir() / "runbooks" / "missing.yaml",
             "name: missing\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: needs-it\n    uses: command\n    with: {argv: [/bin/true]}\n"
             "    env: {TOKEN: \"${secrets.NOT_THERE}\"}\n");
  write_text(cp.dir() / "runbooks" / "short.yaml",
             "name: short\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: weak\n    uses: command\n    with: {argv: [/bin/true]}\n"
             "    env: {PW: \"${secrets.SHORT}\"}\n");
  // A step that declares an output and makes it the secret: outputs are recorded in
  // step.end and may reach later steps' argv, so the step fails instead.
  write_text(cp.dir() / "runbooks" / "exfil.yaml",
             "name: exfil\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: leak\n    uses: script\n    with:\n      script: 'echo \"tok=$TOKEN\"'\n"
             "      outputs:\n        t: {line: \"tok=\", type: string}\n"
             "    env: {TOKEN: \"${secrets.API_TOKEN}\"}\n"
             "  - name: use\n    uses: command\n    with: {argv: [/bin/echo, \"${steps.leak.outputs.t}\"]}\n");
  auto set = run({Bins::agent(), "secret", "set", "API_TOKEN", "--config", cfg}, kLocal + "\n");
  ASSERT_EQ(set.exit_code, 0) << set.err;
  auto list = run({Bins::agent(), "secret", "list", "--config", cfg});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out, "API_TOKEN\n");
  auto key = run({Bins::agent(), "api-key", "create", "--config", cfg, "--id", "oncall", "--scope", "runbooks:execute"});
  ASSERT_EQ(key.exit_code, 0) << key.err;
  const std::string api_key = key.out.substr(0, key.out.find('\n'));
  auto pub = run({Bins::agent(), "identity", "--config", cfg});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;

  Process agent({Bins::agent(), "run", "--config", cfg, "--log-level", "debug"}, cp.dir() / "agent.log",
                {{"CREDENTIALS_DIRECTORY", creds.string()}});
  auto job = [&](const std::string& rb) {
    return Json{{"runbook", rb}, {"params", Json::object()}, {"authorization", {{"type", "api_key"}, {"key", api_key}}}};
  };
  const auto id = cp.submit(job("leaky"));
  ASSERT_EQ(cp.wait_final(id), "succeeded") << agent.log_text();
  const auto missing = cp.submit(job("missing"));
  ASSERT_EQ(cp.wait_final(missing), "failed") << agent.log_text();
  const auto exfil = cp.submit(job("exfil"));
  ASSERT_EQ(cp.wait_final(exfil), "failed") << agent.log_text();
  const auto weak = cp.submit(job("short"));
  ASSERT_EQ(cp.wait_final(weak), "failed") << agent.log_text();

  connectors::Masker masker;
  ASSERT_TRUE(masker.add(kLocal));
  ASSERT_TRUE(masker.add(kSystemd));
  const auto recs = cp.records(id);
  const std::string out = decoded_output(recs, "stdout"), err = decoded_output(recs, "stderr");
  const std::string exported = cp.admin_get("/v1/jobs/" + id + "/records").body;
  const std::string log = agent.log_text();
  for (const auto& p : masker.patterns()) {
    EXPECT_EQ(out.find(p), std::string::npos) << "stdout carries " << p << "\n" << out;
    EXPECT_EQ(err.find(p), std::string::npos) << "stderr carries " << p;
    EXPECT_EQ(exported.find(p), std::string::npos) << "export carries " << p;
    EXPECT_EQ(log.find(p), std::string::npos) << "agent log carries " << p;
  }
  // The step did print all of it: 13 forms for each secret, each masked, and the split ones.
  std::size_t forms = 0;
  for (std::size_t pos = out.find("form:"); pos != std::string::npos; pos = out.find("form:", pos + 1)) {
    const auto line = out.substr(pos, out.find('\n', pos) - pos);
    EXPECT_NE(line.find("***"), std::string::npos) << line;
    EXPECT_LE(line.size(), std::string("form:").size() + 3 + 8) << line;
    ++forms;
  }
  EXPECT_EQ(forms, 26u) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), ':'), 28) << out;  // 26 forms, 2 split lines, nothing else
  EXPECT_NE(out.find("split:***\nform:"), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with("split:***\ndone\ncreds-hidden\n")) << out;
  EXPECT_EQ(err, "split:***\nsplit:***\n");

  // step.start names what the step received, by keyed fingerprint, never by value.
  Json start;
  for (const auto& r : recs) {
    if (r["kind"] == "step.start") start = r["data"];
  }
  ASSERT_TRUE(start.contains("secrets")) << start.dump();
  ASSERT_EQ(start["secrets"].size(), 2u);
  EXPECT_EQ(start["secrets"][0]["name"], "API_TOKEN");
  EXPECT_EQ(start["secrets"][1]["name"], "CRED");
  EXPECT_EQ(start["secrets"][0]["fingerprint"].get<std::string>().size(), 32u);
  EXPECT_NE(start["secrets"][0]["fingerprint"], start["secrets"][1]["fingerprint"]);

  // The export still verifies: masking happened before signing.
  const auto file = tmp.path / "export.jsonl";
  write_text(file, exported);
  auto verified = run({Bins::audit(), "verify", "--public-key", pub.out.substr(0, pub.out.find('\n')), file.string()});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;

  // Unresolvable: the step never ran, and the record names the secret.
  Json end;
  for (const auto& r : cp.records(missing)) {
    if (r["kind"] == "step.end") end = r["data"];
  }
  EXPECT_EQ(end["status"], "setup_failed");
  EXPECT_NE(end["error"].get<std::string>().find("NOT_THERE"), std::string::npos) << end.dump();

  const std::string exfil_export = cp.admin_get("/v1/jobs/" + exfil + "/records").body;
  for (const auto& p : masker.patterns()) EXPECT_EQ(exfil_export.find(p), std::string::npos) << p;
  EXPECT_NE(exfil_export.find("carries a secret"), std::string::npos);
  EXPECT_EQ(exfil_export.find("\"step\":\"use\""), std::string::npos);  // the next step never started

  // Too short to mask: refused at resolution rather than run unmasked or over-masked.
  const std::string weak_export = cp.admin_get("/v1/jobs/" + weak + "/records").body;
  EXPECT_EQ(weak_export.find("pw12345"), std::string::npos);
  for (const auto& r : cp.records(weak)) {
    if (r["kind"] == "step.end") end = r["data"];
  }
  EXPECT_EQ(end["status"], "setup_failed");
  EXPECT_NE(end["error"].get<std::string>().find("SHORT"), std::string::npos) << end.dump();
  EXPECT_NE(end["error"].get<std::string>().find("shorter than 8"), std::string::npos) << end.dump();
  EXPECT_EQ(agent.log_text().find("pw12345"), std::string::npos);
}

}  // namespace
}  // namespace delegate::testing
