#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <delegate/common/metrics.hpp>
#include <delegate/common/metrics_http.hpp>

namespace delegate::metrics {
namespace {

TEST(MetricsText, HelpTypeAndLabelEscaping) {
  Registry r;
  r.counter("x_total", "Line one\nback\\slash \"quoted\"", {{"reason", "a\"b\\c\nd"}}).inc(3);
  r.gauge("g", "A gauge").set(1.5);
  EXPECT_EQ(r.render(),
            "# HELP x_total Line one\\nback\\\\slash \"quoted\"\n"
            "# TYPE x_total counter\n"
            "x_total{reason=\"a\\\"b\\\\c\\nd\"} 3\n"
            "# HELP g A gauge\n"
            "# TYPE g gauge\n"
            "g 1.5\n");
}

TEST(MetricsText, FamilyListsEverySeriesUnderOneHeader) {
  Registry r;
  r.counter("jobs_total", "Jobs", {{"status", "failed"}}).inc();
  r.counter("jobs_total", "Jobs", {{"status", "succeeded"}});
  EXPECT_EQ(r.render(),
            "# HELP jobs_total Jobs\n# TYPE jobs_total counter\n"
            "jobs_total{status=\"failed\"} 1\njobs_total{status=\"succeeded\"} 0\n");
}

TEST(MetricsText, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  auto& h = r.histogram("d_seconds", "Durations", {0.1, 1}, {{"k", "v"}});
  h.observe(0.05);
  h.observe(0.1);  // upper bounds are inclusive
  h.observe(0.5);
  h.observe(7);
  EXPECT_EQ(r.render(),
            "# HELP d_seconds Durations\n# TYPE d_seconds histogram\n"
            "d_seconds_bucket{k=\"v\",le=\"0.1\"} 2\n"
            "d_seconds_bucket{k=\"v\",le=\"1\"} 3\n"
            "d_seconds_bucket{k=\"v\",le=\"+Inf\"} 4\n"
            "d_seconds_sum{k=\"v\"} 7.65\n"
            "d_seconds_count{k=\"v\"} 4\n");
}

TEST(MetricsText, ValuesAndRegistrationErrors) {
  EXPECT_EQ(format_value(1.0 / 0.0), "+Inf");
  EXPECT_EQ(format_value(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(format_value(0.0 / 0.0), "NaN");
  EXPECT_EQ(format_value(1700000000), "1700000000");
  Registry r;
  r.counter("a_total", "A");
  EXPECT_THROW(r.gauge("a_total", "A"), std::logic_error);
  EXPECT_THROW(r.counter("a_total", "A"), std::logic_error);
  EXPECT_THROW(r.counter("bad-name", "B"), std::logic_error);
  EXPECT_THROW(r.counter("b_total", "B", {{"le", "1"}}), std::logic_error);
  EXPECT_THROW(r.histogram("h", "H", {1, 1}), std::logic_error);
}

TEST(MetricsText, CollectorsRunAtScrape) {
  Registry r;
  auto& g = r.gauge("spool_bytes", "Bytes");
  int n = 0;
  r.on_collect([&] { g.set(++n * 10); });
  EXPECT_NE(r.render().find("spool_bytes 10\n"), std::string::npos);
  EXPECT_NE(r.render().find("spool_bytes 20\n"), std::string::npos);
}

TEST(ListenAddress, LoopbackAndUnixOnly) {
  auto a = parse_listen_address("127.0.0.1:9464");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->port, 9464);
  EXPECT_TRUE(parse_listen_address("127.1.2.3:0"));
  EXPECT_TRUE(parse_listen_address("[::1]:9464"));
  auto u = parse_listen_address("unix:/run/delegate/metrics.sock");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->kind, ListenAddress::Kind::unix_socket);
  for (const char* bad : {"0.0.0.0:9464", "10.0.0.1:9464", "[::]:9464", "localhost:9464", "example.com:80",
                          "127.0.0.1", "127.0.0.1:65536", "127.0.0.1:-1", "unix:relative.sock", ":9464"}) {
    EXPECT_FALSE(parse_listen_address(bad)) << bad;
  }
}

TEST(MetricsHttp, RoutesMethodsAndLimits) {
  Registry r;
  r.counter("c_total", "C").inc();
  bool ready = false;
  Endpoints e{&r, [&] { return ready; }};
  auto get = [&](const std::string& target, const std::string& method = "GET") {
    return answer_request(method + " " + target + " HTTP/1.1\r\nHost: x\r\n\r\n", e, false);
  };
  EXPECT_EQ(get("/healthz").rfind("HTTP/1.1 200 ", 0), 0u);
  EXPECT_EQ(get("/readyz").rfind("HTTP/1.1 503 ", 0), 0u);
  ready = true;
  EXPECT_EQ(get("/readyz").rfind("HTTP/1.1 200 ", 0), 0u);
  const auto m = get("/metrics?x=1");
  EXPECT_NE(m.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(m.find("\r\n\r\n# HELP c_total C\n"), std::string::npos);
  EXPECT_EQ(get("/metrics", "HEAD").find("# HELP"), std::string::npos);
  EXPECT_EQ(get("/metrics", "POST").rfind("HTTP/1.1 405 ", 0), 0u);
  EXPECT_EQ(get("/metrics", "DELETE").rfind("HTTP/1.1 405 ", 0), 0u);
  EXPECT_EQ(get("/").rfind("HTTP/1.1 404 ", 0), 0u);
  EXPECT_EQ(get("/metrics/../secret").rfind("HTTP/1.1 404 ", 0), 0u);
  EXPECT_EQ(answer_request("GET /metrics HTTP/1.1\r\n", e, false), "");  // incomplete: wait
  EXPECT_EQ(answer_request("GET /metrics HTTP/1.1\r\n", e, true).rfind("HTTP/1.1 400 ", 0), 0u);
  EXPECT_EQ(answer_request("garbage\r\n\r\n", e, false).rfind("HTTP/1.1 400 ", 0), 0u);
  const std::string huge = "GET /metrics HTTP/1.1\r\nX: " + std::string(kMaxRequestBytes, 'a');
  EXPECT_EQ(answer_request(huge, e, false).rfind("HTTP/1.1 431 ", 0), 0u);
}

std::string exchange(int fd, const std::string& req) {
  EXPECT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

int connect_tcp(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  return fd;
}

// A client that never finishes its request holds the listener only until the request
// deadline; the next scrape is answered after it.
TEST(MetricsHttp, SilentClientDoesNotBlockTheNextScrape) {
  Registry r;
  auto l = HttpListener::start(*parse_listen_address("127.0.0.1:0"), Endpoints{&r, nullptr});
  ASSERT_TRUE(l) << l.error().message;
  const int stuck = connect_tcp((*l)->port());
  ASSERT_EQ(::send(stuck, "GET /met", 8, MSG_NOSIGNAL), 8);
  const int fd = connect_tcp((*l)->port());
  const auto out = exchange(fd, "GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 200 ", 0), 0u) << out;
  ::close(fd);
  // The stuck client was dropped without an answer.
  char c;
  EXPECT_EQ(::recv(stuck, &c, 1, 0), 0);
  ::close(stuck);
}

TEST(MetricsHttp, UnixSocketIsOwnerAndGroupOnlyAndRemoved) {
  const auto dir = std::filesystem::temp_directory_path() / ("metrics-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "m.sock";
  Registry r;
  {
    auto l = HttpListener::start(*parse_listen_address("unix:" + path.string()), Endpoints{&r, [] { return true; }});
    ASSERT_TRUE(l) << l.error().message;
    EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::others_all,
              std::filesystem::perms::none);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    EXPECT_EQ(exchange(fd, "GET /readyz HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200 ", 0), 0u);
    ::close(fd);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  // A regular file in the way is not removed: the listener refuses to start.
  { std::ofstream(path) << "x"; }
  EXPECT_FALSE(HttpListener::start(*parse_listen_address("unix:" + path.string()), Endpoints{&r, nullptr}));
  EXPECT_TRUE(std::filesystem::exists(path));
  std::filesystem::remove_all(dir);
}

// In a directory others can write (a /tmp), another user could swap the new socket for a
// symlink before the chmod, or serve a socket of their own at the path.
TEST(MetricsHttp, UnixSocketInADirectoryOthersCanWriteIsRefused) {
  const auto dir = std::filesystem::temp_directory_path() / ("metrics-open-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::all | std::filesystem::perms::sticky_bit);
  Registry r;
  auto l = HttpListener::start(*parse_listen_address("unix:" + (dir / "m.sock").string()), Endpoints{&r, nullptr});
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message.find("cannot write"), std::string::npos) << l.error().message;
  EXPECT_FALSE(std::filesystem::exists(dir / "m.sock"));
  // Positive control: the same directory closed to others is accepted.
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
  EXPECT_TRUE(HttpListener::start(*parse_listen_address("unix:" + (dir / "m.sock").string()), Endpoints{&r, nullptr}));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace delegate::metrics
