#include <gtest/gtest.h>

#include <delegate/policies/runbook.hpp>
#include <regex>

#include "test_util.hpp"

namespace delegate::policies {
namespace {

using testing::TempDir;

const char* kRestart = R"(
name: restart-service
description: Restart a systemd unit on this host
authorize:
  scopes: [runbooks:execute]
  roles: [sre-oncall]
params:
  service: {type: string, pattern: '^[a-z0-9@._-]{1,64}$', required: true}
  count: {type: integer, min: 1, max: 10, default: 3}
  force: {type: boolean, default: false}
  mode: {type: string, enum: [soft, hard], default: soft, max_length: 8}
steps:
  - name: restart
    uses: command
    with: {argv: [systemctl, restart, "${params.service}"]}
    sandbox: {profile: default, network: false, timeout_s: 60, memory_mb: 256, cpu_s: 10, pids: 32, output_kb: 64}
    env: {COUNT: "${params.count}", FORCE: "${params.force}"}
  - name: check
    uses: script
    with:
      script: |
        systemctl is-active "$SERVICE"
      interpreter: [/bin/sh, -eu]
    env: {SERVICE: "${params.service}"}
)";

Runbook restart() {
  auto rb = parse_runbook(kRestart);
  EXPECT_TRUE(rb.has_value()) << (rb ? "" : rb.error().message);
  return rb.value_or(Runbook{});
}

TEST(Runbook, ParsesFullExample) {
  Runbook rb = restart();
  EXPECT_EQ(rb.name, "restart-service");
  ASSERT_TRUE(rb.authorize.has_value());
  EXPECT_EQ(rb.authorize->scopes, std::vector<std::string>{"runbooks:execute"});
  EXPECT_EQ(rb.authorize->roles, std::vector<std::string>{"sre-oncall"});
  ASSERT_EQ(rb.params.size(), 4u);
  EXPECT_TRUE(rb.params.at("service").required);
  EXPECT_TRUE(rb.params.at("service").compiled.has_value());
  EXPECT_EQ(rb.params.at("count").type, ParamType::integer);
  EXPECT_EQ(rb.params.at("count").min, 1);
  EXPECT_EQ(rb.params.at("count").default_value, Json(3));
  EXPECT_EQ(rb.params.at("mode").allowed, (std::vector<std::string>{"soft", "hard"}));
  ASSERT_EQ(rb.steps.size(), 2u);
  const Step& s0 = rb.steps[0];
  EXPECT_EQ(s0.uses, StepKind::command);
  EXPECT_EQ(s0.argv, (std::vector<std::string>{"systemctl", "restart", "${params.service}"}));
  EXPECT_EQ(s0.sandbox.timeout_s, 60u);
  EXPECT_EQ(s0.sandbox.cpu_s, 10u);
  EXPECT_EQ(s0.sandbox.pids, 32u);
  EXPECT_EQ(s0.sandbox.output_kb, 64u);
  EXPECT_EQ(s0.env.at("COUNT"), "${params.count}");
  const Step& s1 = rb.steps[1];
  EXPECT_EQ(s1.uses, StepKind::script);
  EXPECT_EQ(s1.argv, (std::vector<std::string>{"/bin/sh", "-eu"}));
  EXPECT_NE(s1.script.find("is-active"), std::string::npos);
  EXPECT_EQ(s1.sandbox.timeout_s, 60u);  // defaults
  EXPECT_FALSE(s1.sandbox.cpu_s.has_value());
}

TEST(Runbook, ScriptDefaultsToBinSh) {
  auto rb = parse_runbook("name: s\nauthorize: {scopes: [x]}\nsteps:\n  - {name: a, uses: script, with: {script: 'echo hi'}}\n");
  ASSERT_TRUE(rb.has_value()) << rb.error().message;
  EXPECT_EQ(rb->steps[0].argv, std::vector<std::string>{"/bin/sh"});
}

TEST(Runbook, NoAuthorizeBlockIsAllowedButNotRunnable) {
  auto rb = parse_runbook("name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [true]}}\n");
  ASSERT_TRUE(rb.has_value()) << rb.error().message;
  EXPECT_FALSE(rb->authorize.has_value());
}

struct BadCase {
  const char* yaml;
  const char* expect;  // substring of the error
};

class RunbookRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(RunbookRejects, WithClearError) {
  auto rb = parse_runbook(GetParam().yaml);
  ASSERT_FALSE(rb.has_value()) << GetParam().yaml;
  EXPECT_NE(rb.error().message.find(GetParam().expect), std::string::npos)
      << "got: " << rb.error().message << "\nwant: " << GetParam().expect;
}

#define STEP "steps:\n  - {name: a, uses: command, with: {argv: [true]}}\n"
INSTANTIATE_TEST_SUITE_P(
    Cases, RunbookRejects,
    ::testing::Values(
        // Unknown keys at every level name their path.
        BadCase{"name: s\ncolour: red\n" STEP, "colour: unknown key"},
        BadCase{"name: s\nauthorize: {scopes: [x], group: y}\n" STEP, "authorize.group: unknown key"},
        BadCase{"name: s\nparams: {p: {type: string, patern: x}}\n" STEP, "params.p.patern: unknown key"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [true]}, timeout: 5}\n", "steps[0].timeout: unknown key"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [true], cwd: /}}\n", "steps[0].with.cwd: unknown key"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [true]}, sandbox: {timeot_s: 5}}\n",
                "steps[0].sandbox.timeot_s: unknown key"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: script, with: {script: x, shell: bash}}\n", "steps[0].with.shell: unknown key"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [true]}}\n  - {name: b, uses: command, with: {argv: [true]}, sandbox: {x: 1}}\n",
                "steps[1].sandbox.x: unknown key"},
        // Duplicate keys, at the top level and nested, name their path.
        BadCase{"name: s\nname: t\n" STEP, "duplicate key name"},
        BadCase{"name: s\nparams: {p: {type: string, type: integer}}\n" STEP, "duplicate key params.p.type"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [true]}, sandbox: {root: false, root: true}}\n",
                "duplicate key steps[0].sandbox.root"},
        BadCase{"name: s\nparams: {p: {type: string, allow_leading_dash: maybe}}\n" STEP,
                "params.p.allow_leading_dash: must be true or false"},
        BadCase{"name: s\nparams: {p: {type: integer, allow_leading_dash: true}}\n" STEP,
                "params.p.allow_leading_dash: only applies to string"},
        BadCase{"name: s\nparams: {p: {type: string, default: --all}}\n" STEP, "params.p.default: "},
        // Names and structure.
        BadCase{STEP, "name: missing"},
        BadCase{"name: Bad_Name\n" STEP, "name: must match"},
        BadCase{"name: s\n", "steps: missing"},
        BadCase{"name: s\nsteps: []\n", "steps: must be a non-empty list"},
        BadCase{"name: s\nparams: {1bad: {type: string}}\n" STEP, "params.1bad: parameter names"},
        BadCase{"name: s\nparams: {p: {type: float}}\n" STEP, "params.p.type: must be string, integer or boolean"},
        BadCase{"name: s\nparams: {p: {pattern: x}}\n" STEP, "params.p.type: missing"},
        BadCase{"name: s\nparams: {p: {type: string, pattern: '([a-z'}}\n" STEP, "params.p.pattern: invalid regular expression"},
        BadCase{"name: s\nparams: {p: {type: string, pattern: x, max_length: 1025}}\n" STEP, "params.p.max_length: must be at most 1024"},
        BadCase{"name: s\nparams: {p: {type: integer, pattern: x}}\n" STEP, "params.p.pattern: only applies to string"},
        BadCase{"name: s\nparams: {p: {type: integer, min: 5, max: 1}}\n" STEP, "min is greater than max"},
        BadCase{"name: s\nparams: {p: {type: integer, default: '5'}}\n" STEP, "params.p.default: must be an integer"},
        BadCase{"name: s\nparams: {p: {type: string, enum: [a], default: b}}\n" STEP, "params.p.default: parameter"},
        BadCase{"name: s\nauthorize: {}\n" STEP, "authorize: must list at least one scope or role"},
        // Step kinds and argv.
        BadCase{"name: s\nsteps:\n  - {name: a, uses: http, with: {url: x}}\n", "steps[0].with.url: must be an https:// URL"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: shell, with: {argv: [x]}}\n", "steps[0].uses: must be command, script or http"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: []}}\n", "steps[0].with.argv: must not be empty"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [ls, [a]]}}\n", "steps[0].with.argv[1]: must be a string"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command}\n", "steps[0].with: missing"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [x]}}\n  - {name: a, uses: command, with: {argv: [y]}}\n", "duplicate step name"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [x]}, sandbox: {timeout_s: '60'}}\n", "timeout_s: must be an integer"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [x]}, sandbox: {timeout_s: 0}}\n", "timeout_s: must be between"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [x]}, sandbox: {network: yes}}\n", "network: must be true or false"},
        // Parameter references.
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [echo, '${params.nope}']}}\n", "undeclared parameter nope"},
        BadCase{"name: s\nparams: {p: {type: string}}\nsteps:\n  - {name: a, uses: command, with: {argv: [echo, '${params.p}']}}\n",
                "optional parameter p that has no default"},
        BadCase{"name: s\nparams: {p: {type: string, required: true}}\nsteps:\n  - {name: a, uses: command, with: {argv: ['${params.p}']}}\n",
                "the program cannot be a parameter"},
        BadCase{"name: s\nparams: {p: {type: string, required: true}}\nsteps:\n  - {name: a, uses: command, with: {argv: [echo, '${params.p']}}\n",
                "unterminated"},
        BadCase{"name: s\nparams: {p: {type: string, required: true}}\nsteps:\n  - {name: a, uses: script, with: {script: 'echo ${params.p}'}}\n",
                "parameters cannot be substituted into script text"},
        BadCase{"name: s\nparams: {p: {type: string, required: true}}\nsteps:\n  - {name: a, uses: command, with: {argv: [x]}, env: {X: '${params.q}'}}\n",
                "steps[0].env.X: references undeclared parameter q"},
        BadCase{"name: s\nparams: {p: {type: string, required: true}}\nsteps:\n  - {name: a, uses: command, with: {argv: [x]}, env: {LD_PRELOAD: '${params.p}'}}\n",
                "loader/shell control"},
        BadCase{"name: s\nsteps:\n  - {name: a, uses: command, with: {argv: [x]}, env: {1X: y}}\n", "variable names"},
        // YAML itself.
        BadCase{"name: [unterminated\n", "invalid YAML"},
        BadCase{"", "empty runbook"},
        BadCase{"- a\n- b\n", "must be a mapping"}));
#undef STEP


// One step with the given sandbox block (flow style).
Result<Runbook> with_sandbox(const std::string& block) {
  return parse_runbook("name: s\nparams: {p: {type: string, required: true}}\nsteps:\n"
                       "  - {name: a, uses: command, with: {argv: [x]}, sandbox: " + block + "}\n");
}

std::string sandbox_error(const std::string& block) {
  auto rb = with_sandbox(block);
  EXPECT_FALSE(rb) << block;
  return rb ? std::string() : rb.error().message;
}

TEST(RunbookSandbox, DefaultsWithoutTheNewKeys) {
  auto rb = with_sandbox("{timeout_s: 5}");
  ASSERT_TRUE(rb) << rb.error().message;
  const StepSandbox& sb = rb->steps[0].sandbox;
  EXPECT_EQ(sb.profile, "default");
  EXPECT_FALSE(sb.network);
  EXPECT_FALSE(sb.cpu_percent.has_value());
  EXPECT_FALSE(sb.root);
  EXPECT_FALSE(sb.allow_degraded);
  EXPECT_TRUE(sb.ro.empty());
  EXPECT_TRUE(sb.rw.empty());
  EXPECT_TRUE(sb.hide.empty());
}

TEST(RunbookSandbox, EveryNewKeyParses) {
  auto rb = with_sandbox(
      "{cpu_percent: 250, root: true, allow_degraded: true, ro: [/etc/nginx, /usr/share/doc], "
      "rw: [/var/log/nginx], hide: [/etc/nginx/secrets, /root/.ssh/id_ed25519]}");
  ASSERT_TRUE(rb) << rb.error().message;
  const StepSandbox& sb = rb->steps[0].sandbox;
  EXPECT_EQ(sb.cpu_percent, 250u);
  EXPECT_TRUE(sb.root);
  EXPECT_TRUE(sb.allow_degraded);
  EXPECT_EQ(sb.ro, (std::vector<std::string>{"/etc/nginx", "/usr/share/doc"}));
  EXPECT_EQ(sb.rw, (std::vector<std::string>{"/var/log/nginx"}));
  EXPECT_EQ(sb.hide, (std::vector<std::string>{"/etc/nginx/secrets", "/root/.ssh/id_ed25519"}));
  EXPECT_TRUE(sb.sockets.empty());
  auto sockets = with_sandbox("{sockets: [/run/systemd/private]}");
  ASSERT_TRUE(sockets) << sockets.error().message;
  EXPECT_EQ(sockets->steps[0].sandbox.sockets, (std::vector<std::string>{"/run/systemd/private"}));
  // Bounds are inclusive; false is a valid explicit value.
  auto lo = with_sandbox("{cpu_percent: 1, root: false, allow_degraded: false, ro: []}");
  ASSERT_TRUE(lo) << lo.error().message;
  EXPECT_EQ(lo->steps[0].sandbox.cpu_percent, 1u);
  EXPECT_FALSE(lo->steps[0].sandbox.root);
  EXPECT_TRUE(lo->steps[0].sandbox.ro.empty());
  auto hi = with_sandbox("{cpu_percent: 100000}");
  ASSERT_TRUE(hi) << hi.error().message;
  EXPECT_EQ(hi->steps[0].sandbox.cpu_percent, 100000u);
}

TEST(RunbookSandbox, NetworkSelectsTheNetworkProfileUnlessOneIsNamed) {
  auto implied = with_sandbox("{network: true}");
  ASSERT_TRUE(implied) << implied.error().message;
  EXPECT_TRUE(implied->steps[0].sandbox.network);
  EXPECT_EQ(implied->steps[0].sandbox.profile, "network");
  auto named = with_sandbox("{network: true, profile: /etc/delegate/seccomp/curl.json}");
  ASSERT_TRUE(named) << named.error().message;
  EXPECT_EQ(named->steps[0].sandbox.profile, "/etc/delegate/seccomp/curl.json");
  auto explicit_default = with_sandbox("{profile: default, network: true}");
  ASSERT_TRUE(explicit_default) << explicit_default.error().message;
  EXPECT_EQ(explicit_default->steps[0].sandbox.profile, "default");
  auto off = with_sandbox("{network: false}");
  ASSERT_TRUE(off) << off.error().message;
  EXPECT_EQ(off->steps[0].sandbox.profile, "default");
}

TEST(RunbookSandbox, InvalidValuesAreErrorsNamingTheKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"{cpu_percent: 0}", "steps[0].sandbox.cpu_percent: must be between 1 and 100000"},
      {"{cpu_percent: 100001}", "steps[0].sandbox.cpu_percent: must be between 1 and 100000"},
      {"{cpu_percent: '50'}", "steps[0].sandbox.cpu_percent: must be an integer"},
      {"{root: yes}", "steps[0].sandbox.root: must be true or false"},
      {"{allow_degraded: 1}", "steps[0].sandbox.allow_degraded: must be true or false"},
      {"{ro: [etc/nginx]}", "steps[0].sandbox.ro[0]: must be an absolute path"},
      {"{rw: [/ok, ./log]}", "steps[0].sandbox.rw[1]: must be an absolute path"},
      {"{hide: ['']}", "steps[0].sandbox.hide[0]: must be an absolute path"},
      {"{ro: ['/srv/${params.p}']}", "steps[0].sandbox.ro[0]: a mount path cannot be a parameter"},
      {"{rw: ['/${params.p}']}", "steps[0].sandbox.rw[0]: a mount path cannot be a parameter"},
      {"{hide: ['/x/${params.p}/y']}", "steps[0].sandbox.hide[0]: a mount path cannot be a parameter"},
      {"{ro: /etc/nginx}", "steps[0].sandbox.ro: must be a list of absolute paths"},
      {"{rw: {a: b}}", "steps[0].sandbox.rw: must be a list of absolute paths"},
      {"{hide: [[/a]]}", "steps[0].sandbox.hide[0]: must be a string"},
      {"{sockets: [run/x.sock]}", "steps[0].sandbox.sockets[0]: must be an absolute path"},
      {"{sockets: /run/x.sock}", "steps[0].sandbox.sockets: must be a list of absolute paths"},
      {"{sockets: ['/run/${params.p}']}", "steps[0].sandbox.sockets[0]: a mount path cannot be a parameter"},
      {"{read_only: [/etc]}", "steps[0].sandbox.read_only: unknown key"},
      {"{cpu_pct: 50}", "steps[0].sandbox.cpu_pct: unknown key"},
  };
  for (const auto& [block, want] : cases) {
    const std::string got = sandbox_error(block);
    EXPECT_NE(got.find(want), std::string::npos) << block << "\n got: " << got << "\nwant: " << want;
  }
}

TEST(Runbook, CountLimits) {
  std::string yaml = "name: s\nparams:\n";
  for (int i = 0; i < 65; ++i) yaml += "  p" + std::to_string(i) + ": {type: string}\n";
  yaml += "steps:\n  - {name: a, uses: command, with: {argv: [x]}}\n";
  auto r = parse_runbook(yaml);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("more than 64 parameters"), std::string::npos);

  yaml = "name: s\nsteps:\n";
  for (int i = 0; i < 33; ++i) yaml += "  - {name: s" + std::to_string(i) + ", uses: command, with: {argv: [x]}}\n";
  r = parse_runbook(yaml);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("more than 32 steps"), std::string::npos);
}

struct ParamCase {
  const char* what;
  const char* params_json;
  bool ok;
};

class ParamValidation : public ::testing::TestWithParam<ParamCase> {};

TEST_P(ParamValidation, Table) {
  static const Runbook rb = restart();
  Json params = Json::parse(GetParam().params_json);
  auto r = validate_params(rb, params);
  EXPECT_EQ(r.has_value(), GetParam().ok) << GetParam().what << (r ? "" : ": " + r.error().message);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParamValidation,
    ::testing::Values(
        ParamCase{"minimal", R"({"service":"nginx"})", true},
        ParamCase{"all", R"({"service":"nginx@1.service","count":10,"force":true,"mode":"hard"})", true},
        ParamCase{"missing required", R"({})", false},
        ParamCase{"unknown name", R"({"service":"nginx","extra":1})", false},
        ParamCase{"shell injection", R"({"service":"nginx; rm -rf /"})", false},
        ParamCase{"command substitution", R"J({"service":"$(reboot)"})J", false},
        ParamCase{"newline", R"({"service":"nginx\nreboot"})", false},
        ParamCase{"trailing newline vs $", R"({"service":"nginx\n"})", false},
        ParamCase{"too long for pattern", R"({"service":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})", false},
        ParamCase{"NUL", R"({"service":"ng\u0000inx"})", false},
        ParamCase{"service not a string", R"({"service":5})", false},
        ParamCase{"integer as string", R"({"service":"a","count":"5"})", false},
        ParamCase{"integer as float", R"({"service":"a","count":5.0})", false},
        ParamCase{"integer as bool", R"({"service":"a","count":true})", false},
        ParamCase{"integer below min", R"({"service":"a","count":0})", false},
        ParamCase{"integer above max", R"({"service":"a","count":11})", false},
        ParamCase{"integer huge", R"({"service":"a","count":18446744073709551615})", false},
        ParamCase{"bool as string", R"({"service":"a","force":"true"})", false},
        ParamCase{"bool as int", R"({"service":"a","force":1})", false},
        ParamCase{"enum miss", R"({"service":"a","mode":"medium"})", false},
        ParamCase{"null value", R"({"service":null})", false},
        ParamCase{"array value", R"({"service":["nginx"]})", false},
        ParamCase{"params not object", R"(["service"])", false},
        // A leading '-' would make the value an option of the command; the pattern
        // ('^[a-z0-9@._-]{1,64}$') admits it, the leading-dash rule does not.
        ParamCase{"option-like value", R"({"service":"-hfoo"})", false},
        ParamCase{"long option value", R"({"service":"--help"})", false},
        ParamCase{"dash inside is fine", R"({"service":"a-b"})", true},
        ParamCase{"enum value with dash", R"({"service":"a","mode":"-x"})", false}));

TEST(Runbook, AllowLeadingDashAdmitsOptionLikeValues) {
  auto rb = parse_runbook("name: s\nparams:\n  offset: {type: string, pattern: '^-?[0-9]+$', allow_leading_dash: true}\n"
                          "  name: {type: string}\nsteps:\n  - {name: a, uses: command, with: {argv: [true]}}\n");
  ASSERT_TRUE(rb) << rb.error().message;
  EXPECT_TRUE(rb->params.at("offset").allow_leading_dash);
  EXPECT_FALSE(rb->params.at("name").allow_leading_dash);
  EXPECT_TRUE(validate_params(*rb, Json{{"offset", "-5"}}));
  auto no = validate_params(*rb, Json{{"name", "-5"}});
  ASSERT_FALSE(no);
  EXPECT_NE(no.error().message.find("starts with '-'"), std::string::npos) << no.error().message;
}

TEST(Runbook, DefaultsAreFilled) {
  Runbook rb = restart();
  auto r = validate_params(rb, Json::parse(R"({"service":"nginx"})"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, Json::parse(R"({"service":"nginx","count":3,"force":false,"mode":"soft"})"));
}

TEST(Runbook, OversizeStringRejected) {
  auto rb = parse_runbook("name: s\nparams: {p: {type: string, max_length: 4, required: true}}\n"
                          "steps:\n  - {name: a, uses: command, with: {argv: [echo, '${params.p}']}}\n");
  ASSERT_TRUE(rb.has_value()) << rb.error().message;
  EXPECT_TRUE(validate_params(*rb, Json{{"p", "abcd"}}));
  EXPECT_FALSE(validate_params(*rb, Json{{"p", "abcde"}}));
  Runbook dflt = *rb;
  dflt.params.at("p").max_length = 1024;
  EXPECT_FALSE(validate_params(dflt, Json{{"p", std::string(1025, 'a')}}));
  // A hostile long value against a recursive pattern is refused by length before the
  // regex engine sees it.
  auto rx = parse_runbook("name: s\nparams: {p: {type: string, pattern: '^((a)|(b))*$', required: true}}\n"
                          "steps:\n  - {name: a, uses: command, with: {argv: [echo, '${params.p}']}}\n");
  ASSERT_TRUE(rx.has_value()) << rx.error().message;
  EXPECT_TRUE(validate_params(*rx, Json{{"p", std::string(1024, 'a')}}));
  EXPECT_FALSE(validate_params(*rx, Json{{"p", std::string(200000, 'a')}}));
}

TEST(Runbook, Substitution) {
  Json p = {{"service", "nginx; rm -rf /"}, {"count", 3}, {"force", true}};
  EXPECT_EQ(substitute("${params.service}", p).value(), "nginx; rm -rf /");
  EXPECT_EQ(substitute("--count=${params.count}", p).value(), "--count=3");
  EXPECT_EQ(substitute("${params.force}/${params.count}", p).value(), "true/3");
  EXPECT_EQ(substitute("cost $5 ${HOME} $params.x ${other.y}", p).value(), "cost $5 ${HOME} $params.x ${other.y}");
  EXPECT_EQ(substitute("$", p).value(), "$");
  EXPECT_EQ(substitute("", p).value(), "");
  EXPECT_FALSE(substitute("${params.missing}", p).has_value());
  EXPECT_FALSE(substitute("${params.service", p).has_value());
  EXPECT_FALSE(substitute("${params.bad-name}", p).has_value());
  // A value containing reference syntax is not expanded again.
  Json q = {{"a", "${params.b}"}, {"b", "x"}};
  EXPECT_EQ(substitute("${params.a}", q).value(), "${params.b}");
}

TEST(Catalog, LoadsShippedRunbooks) {
  auto cat = Catalog::load_dir(testing::shipped_runbooks_dir());
  ASSERT_TRUE(cat.has_value()) << cat.error().message;
  EXPECT_EQ(cat->size(), 2u);
  const Runbook* diag = cat->find("host-diagnostics");
  ASSERT_NE(diag, nullptr);
  ASSERT_EQ(diag->steps.size(), 4u);
  EXPECT_EQ(diag->steps[3].argv, (std::vector<std::string>{"free", "-m"}));
  EXPECT_EQ(diag->steps[2].argv, (std::vector<std::string>{"df", "-h", "/"}));
  EXPECT_EQ(diag->steps[0].sandbox.timeout_s, 20u);
  EXPECT_EQ(validate_params(*diag, Json::object()).value(), Json::parse(R"({"detail":"basic"})"));
  EXPECT_FALSE(validate_params(*diag, Json{{"detail", "everything"}}));
  const Runbook* rs = cat->find("restart-service");
  ASSERT_NE(rs, nullptr);
  EXPECT_EQ(rs->steps[0].argv[2], "${params.service}");
  EXPECT_TRUE(rs->steps[0].sandbox.root);  // systemctl needs uid 0; the agent must allow it
  // ...and systemd's private socket, which the agent must list in allow_sockets, plus
  // the "booted" marker directory systemctl checks. Nothing else of /run.
  EXPECT_EQ(rs->steps[0].sandbox.sockets, (std::vector<std::string>{"/run/systemd/private"}));
  EXPECT_EQ(rs->steps[0].sandbox.ro, (std::vector<std::string>{"/run/systemd/system"}));
  EXPECT_FALSE(rs->steps[0].sandbox.network);
  // The shipped pattern itself refuses option-like unit names ("-H host" would make
  // systemctl talk to another machine), leading-dash rule aside.
  ASSERT_TRUE(rs->params.at("service").compiled);
  for (const char* v : {"-H", "-Hroot@10.0.0.1", "--host=x", "-h"}) {
    EXPECT_FALSE(std::regex_match(v, *rs->params.at("service").compiled)) << v;
    EXPECT_FALSE(validate_params(*rs, Json{{"service", v}})) << v;
  }
  EXPECT_TRUE(validate_params(*rs, Json{{"service", "nginx.service"}}));
  EXPECT_EQ(cat->find("nope"), nullptr);
}

TEST(Catalog, DirectoryErrors) {
  TempDir dir;
  EXPECT_FALSE(Catalog::load_dir(dir / "missing").has_value());

  dir.write("a.yaml", "name: one\nsteps:\n  - {name: a, uses: command, with: {argv: [x]}}\n");
  dir.write("notes.txt", "ignored");
  auto ok = Catalog::load_dir(dir.path());
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(ok->size(), 1u);

  dir.write("b.yml", "name: one\nsteps:\n  - {name: a, uses: command, with: {argv: [y]}}\n");
  auto dup = Catalog::load_dir(dir.path());
  ASSERT_FALSE(dup.has_value());
  EXPECT_NE(dup.error().message.find("duplicate runbook name one"), std::string::npos) << dup.error().message;

  dir.write("b.yml", "name: two\nsteps:\n  - {name: a, uses: command, with: {argv: [y]}, sandbox: {timeot_s: 1}}\n");
  auto bad = Catalog::load_dir(dir.path());
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("b.yml: steps[0].sandbox.timeot_s: unknown key"), std::string::npos)
      << bad.error().message;
}

}  // namespace
}  // namespace delegate::policies

namespace delegate::policies {
namespace {

TEST(RunbookSandboxLimits, MountPathsUnderProcOrDevAndOverlongListsAreRefused) {
  for (const char* bad : {"{ro: [/proc]}", "{rw: [/proc/sys]}", "{hide: [/dev/shm]}", "{ro: [/dev]}"}) {
    auto rb = parse_runbook(std::string("name: t\nauthorize: {scopes: [s]}\nsteps:\n  - name: a\n    uses: command\n"
                                        "    with: {argv: [true]}\n    sandbox: ") + bad + "\n");
    ASSERT_FALSE(rb) << bad;
    EXPECT_NE(rb.error().message.find("provided by the sandbox"), std::string::npos) << rb.error().message;
  }
  // /procfoo is not /proc.
  EXPECT_TRUE(parse_runbook("name: t\nauthorize: {scopes: [s]}\nsteps:\n  - name: a\n    uses: command\n"
                            "    with: {argv: [true]}\n    sandbox: {ro: [/procfoo, /devices]}\n"));
  std::string many = "[";
  for (int i = 0; i < 65; ++i) many += (i ? ", /srv/p" : "/srv/p") + std::to_string(i);
  many += "]";
  auto rb = parse_runbook("name: t\nauthorize: {scopes: [s]}\nsteps:\n  - name: a\n    uses: command\n"
                          "    with: {argv: [true]}\n    sandbox: {ro: " + many + "}\n");
  ASSERT_FALSE(rb);
  EXPECT_NE(rb.error().message.find("at most 64"), std::string::npos) << rb.error().message;
}

}  // namespace
}  // namespace delegate::policies
