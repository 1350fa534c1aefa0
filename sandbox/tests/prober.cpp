// delegate-syscall-prober NAME: attempts one syscall so that, even where it is allowed,
// nothing happens (invalid arguments, nonexistent paths, pids or fds), then prints
// "NAME errno=<N>" (0 = the call succeeded) and exits 0. Exit 2 for an unknown NAME.
// The sandbox tests compare the errno inside each seccomp profile against EPERM.
//
// delegate-syscall-prober ACTION [ARG…]: the escape tests' probes, which aim at a real
// target (a pid, a path, a port) or really do what they name (add a key, set up an
// io_uring) and undo it. They print "ACTION ARG… errno=<N>" (some add " found=0|1")
// and are not part of --list: the seccomp table covers only the harmless probes.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr const char* kMissing = "/nonexistent/delegate-prober";
constexpr long kPtraceAttach = 16;  // PTRACE_ATTACH, without <sys/ptrace.h>'s enum clash
constexpr long kNoSuchPid = 0x3ffffff0;  // above pid_max's ceiling (4194304)

long raw(long r) { return r < 0 ? errno : 0; }

long open_socket(int family, int type) {
  const int fd = ::socket(family, type, 0);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

long forked(long r) {
  if (r < 0) return errno;
  if (r == 0) ::_exit(0);
  int status = 0;
  ::waitpid(static_cast<pid_t>(r), &status, 0);
  return 0;
}

// socket() with the family as a raw 64-bit argument (the kernel truncates it to int).
long open_socket_raw(unsigned long family, int type) {
  const long fd = ::syscall(SYS_socket, family, type, 0);
  if (fd < 0) return errno;
  ::close(static_cast<int>(fd));
  return 0;
}

// What an HTTP client does first: resolve (with AI_ADDRCONFIG, which makes glibc ask
// the kernel for the configured address families over NETLINK_ROUTE) and connect.
// Port 1 on loopback: ECONNREFUSED when everything is allowed.
long http_client_steps() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo("127.0.0.1", "1", &hints, &res);
  if (rc != 0) return rc == EAI_SYSTEM ? errno : 1000 - rc;  // EAI_* are negative
  const int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  if (fd < 0) {
    const long err = errno;
    ::freeaddrinfo(res);
    return err;
  }
  const int c = ::connect(fd, res->ai_addr, res->ai_addrlen);
  const long err = c == 0 ? 0 : errno;
  ::close(fd);
  ::freeaddrinfo(res);
  return err;
}

long try_personality(unsigned long persona) {
  const int r = ::personality(persona);
  return r == -1 ? errno : 0;
}

const std::map<std::string, std::function<long()>>& probes() {
  static const std::map<std::string, std::function<long()>> table = {
      {"getpid", [] { return raw(::syscall(SYS_getpid)); }},
      {"ptrace", [] { return raw(::syscall(SYS_ptrace, 12 /*PTRACE_GETREGS*/, kNoSuchPid, 0, 0)); }},
      {"ptrace_attach", [] { return raw(::syscall(SYS_ptrace, kPtraceAttach, kNoSuchPid, 0, 0)); }},
      {"process_vm_readv", [] {
         char b;
         iovec l{&b, 1}, r{&b, 1};
         return raw(::syscall(SYS_process_vm_readv, kNoSuchPid, &l, 1, &r, 1, 0));
       }},
      {"kcmp", [] { return raw(::syscall(SYS_kcmp, kNoSuchPid, kNoSuchPid, 0, 0, 0)); }},
      {"mount", [] { return raw(::mount("none", kMissing, "tmpfs", 0, nullptr)); }},
      {"umount2", [] { return raw(::umount2(kMissing, 0)); }},
      {"pivot_root", [] { return raw(::syscall(SYS_pivot_root, kMissing, kMissing)); }},
      {"chroot", [] { return raw(::chroot(kMissing)); }},
      {"fsopen", [] { return raw(::syscall(SYS_fsopen, "delegate-no-such-fs", 0)); }},
      {"open_tree", [] { return raw(::syscall(SYS_open_tree, -1, kMissing, 0)); }},
      {"unshare", [] { return raw(::unshare(0)); }},  // no flags: a no-op if allowed
      // A user namespace for this short-lived process only; gone when it exits.
      {"unshare_newuser", [] { return raw(::unshare(CLONE_NEWUSER)); }},
      {"move_mount", [] { return raw(::syscall(SYS_move_mount, -1, kMissing, -1, kMissing, 0)); }},
      {"fspick", [] { return raw(::syscall(SYS_fspick, -1, kMissing, 0)); }},
      {"mount_setattr", [] { return raw(::syscall(SYS_mount_setattr, -1, kMissing, 0, nullptr, 0)); }},
      {"request_key", [] { return raw(::syscall(SYS_request_key, "", "", nullptr, 0)); }},
      {"process_vm_writev", [] {
         char b = 0;
         iovec l{&b, 1}, r{&b, 1};
         return raw(::syscall(SYS_process_vm_writev, kNoSuchPid, &l, 1, &r, 1, 0));
       }},
      {"name_to_handle_at", [] { return raw(::syscall(SYS_name_to_handle_at, -1, kMissing, nullptr, nullptr, 0)); }},
      {"io_uring_enter", [] { return raw(::syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0)); }},
      {"settimeofday", [] { return raw(::syscall(SYS_settimeofday, nullptr, nullptr)); }},  // no-op
      {"openat", [] { return raw(::syscall(SYS_openat, AT_FDCWD, kMissing, O_RDONLY)); }},
      {"socketpair_unix", [] {
         int sv[2];
         if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return static_cast<long>(errno);
         ::close(sv[0]);
         ::close(sv[1]);
         return 0l;
       }},
      {"socket_alg", [] { return open_socket(AF_ALG, SOCK_SEQPACKET); }},
      {"socket_vsock", [] { return open_socket(AF_VSOCK, SOCK_STREAM); }},
      // AF_UNIX with garbage in the upper half: the kernel sees AF_UNIX.
      {"socket_unix_highbits", [] { return open_socket_raw(0x100000000ul | AF_UNIX, SOCK_STREAM); }},
      // AF_INET with garbage in the upper half must not slip past an AF_UNIX-only rule.
      {"socket_inet_highbits", [] { return open_socket_raw(0x100000000ul | AF_INET, SOCK_STREAM); }},
      {"http_client", [] { return http_client_steps(); }},
      {"setns", [] { return raw(::setns(-1, 0)); }},
      {"keyctl", [] { return raw(::syscall(SYS_keyctl, 0xffff, 0, 0, 0, 0)); }},
      {"add_key", [] { return raw(::syscall(SYS_add_key, "", "", nullptr, 0, 0)); }},
      {"bpf", [] { return raw(::syscall(SYS_bpf, -1, nullptr, 0)); }},
      // Flags outside KEXEC_FLAGS and KEXEC_ARCH_MASK: EINVAL before anything is loaded.
      {"kexec_load", [] { return raw(::syscall(SYS_kexec_load, 0, 0, nullptr, 0x4000ul)); }},
      {"init_module", [] { return raw(::syscall(SYS_init_module, nullptr, 0, "")); }},
      {"delete_module", [] { return raw(::syscall(SYS_delete_module, "delegate_no_such_module", 0)); }},
      {"reboot", [] { return raw(::syscall(SYS_reboot, 0, 0, 0, nullptr)); }},  // bad magic
      {"swapon", [] { return raw(::syscall(SYS_swapon, kMissing, 0)); }},
      {"acct", [] { return raw(::syscall(SYS_acct, kMissing)); }},
      {"clock_settime", [] {
         timespec ts{};
         return raw(::syscall(SYS_clock_settime, CLOCK_MONOTONIC, &ts));  // never settable
       }},
      {"syslog", [] { return raw(::syscall(SYS_syslog, 10 /*SIZE_BUFFER*/, nullptr, 0)); }},
      {"iopl", [] { return raw(::syscall(SYS_iopl, 0)); }},
      {"userfaultfd", [] { return raw(::syscall(SYS_userfaultfd, 0xffffffff)); }},
      {"perf_event_open", [] { return raw(::syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0)); }},
      {"io_uring_setup", [] { return raw(::syscall(SYS_io_uring_setup, 0, nullptr)); }},
      {"open_by_handle_at", [] { return raw(::syscall(SYS_open_by_handle_at, -1, nullptr, 0)); }},
      {"pidfd_getfd", [] { return raw(::syscall(SYS_pidfd_getfd, -1, 0, 0)); }},
      {"lookup_dcookie", [] { return raw(::syscall(SYS_lookup_dcookie, 0, nullptr, 0)); }},
      {"_sysctl", [] { return raw(::syscall(SYS__sysctl, nullptr)); }},
      // fd -1 rather than stdin: the filter decides before the fd is looked at, and an
      // unsandboxed run must never push a byte into the developer's terminal.
      {"tiocsti", [] {
         char c = 'x';
         return raw(::syscall(SYS_ioctl, -1, TIOCSTI, &c));
       }},
      // The kernel truncates the request to 32 bits; the filter must too.
      {"tiocsti_highbits", [] {
         char c = 'x';
         return raw(::syscall(SYS_ioctl, -1, 0x100000000ul | TIOCSTI, &c));
       }},
      {"tioclinux", [] {
         char sub = 0;
         return raw(::syscall(SYS_ioctl, -1, TIOCLINUX, &sub));
       }},
      {"ioctl_other", [] { return raw(::syscall(SYS_ioctl, -1, TCGETS, nullptr)); }},
      {"socket_unix", [] { return open_socket(AF_UNIX, SOCK_STREAM); }},
      {"socket_inet", [] { return open_socket(AF_INET, SOCK_STREAM); }},
      {"socket_inet6", [] { return open_socket(AF_INET6, SOCK_DGRAM); }},
      {"socket_netlink", [] { return open_socket(AF_NETLINK, SOCK_RAW); }},
      {"socket_packet", [] { return open_socket(AF_PACKET, SOCK_DGRAM); }},
      // CLONE_FS with a new user/mount namespace is EINVAL, so an allowed call creates nothing.
      {"clone_newuser", [] { return raw(::syscall(SYS_clone, CLONE_NEWUSER | CLONE_FS | SIGCHLD, 0, 0, 0, 0)); }},
      {"clone_newns", [] { return raw(::syscall(SYS_clone, CLONE_NEWNS | CLONE_FS | SIGCHLD, 0, 0, 0, 0)); }},
      {"clone3", [] { return raw(::syscall(SYS_clone3, nullptr, 0)); }},
      {"clone_plain", [] { return forked(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0)); }},
      {"fork", [] { return forked(::fork()); }},
      {"personality_query", [] { return try_personality(0xffffffff); }},
      {"personality_linux", [] { return try_personality(PER_LINUX); }},
      {"personality_linux32", [] { return try_personality(PER_LINUX32); }},
      {"personality_uname26", [] { return try_personality(UNAME26); }},
      {"personality_no_randomize", [] { return try_personality(ADDR_NO_RANDOMIZE); }},
      {"personality_read_implies_exec", [] { return try_personality(READ_IMPLIES_EXEC); }},
      // Address-space limit check: 256 MiB of untouched anonymous memory.
      {"mmap_256m", [] {
         void* p = ::mmap(nullptr, 256ul << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
         return p == MAP_FAILED ? static_cast<long>(errno) : 0l;
       }},
#if defined(__x86_64__)
      // i386 getpid through the 32-bit entry point: a foreign architecture for the filter.
      {"int80_getpid", [] {
         long ret = 20;
         asm volatile("int $0x80" : "+a"(ret) : : "memory");
         return ret < 0 ? -ret : 0;
       }},
      // x32 ABI getpid: same audit arch as x86_64 but a different syscall table; must not
      // slip past rules written for x86_64 numbers.
      {"x32_getpid", [] { return raw(::syscall(0x40000000l | SYS_getpid)); }},
#endif
      {"personality_highbits", [] { return raw(::syscall(SYS_personality, 0x100000000ul)); }},
  };
  return table;
}


// ---- The escape tests' actions -------------------------------------------------------

using Args = std::vector<std::string>;

struct Answer {
  long err = 0;
  int found = -1;  // -1: not a search
};

long to_long(const std::string& s) { return std::strtol(s.c_str(), nullptr, 0); }

// Everything a descriptor yields, or errno.
long slurp(int fd, std::string* out) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    out->append(buf, static_cast<std::size_t>(n));
  }
}

Answer find_in_file(const std::string& path, const std::string& marker) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {errno};
  std::string content;
  const long err = slurp(fd, &content);
  ::close(fd);
  if (err != 0) return {err};
  return {0, content.find(marker) != std::string::npos ? 1 : 0};
}

// Reads every readable mapping of PID (or "self") through /proc/PID/mem and looks for
// MARKER: what a step would do to lift a secret out of the agent's memory.
Answer find_in_mem(const std::string& pid, const std::string& marker) {
  const std::string base = "/proc/" + pid;
  const int maps_fd = ::open((base + "/maps").c_str(), O_RDONLY | O_CLOEXEC);
  if (maps_fd < 0) return {errno};
  std::string maps;
  const long maps_err = slurp(maps_fd, &maps);
  ::close(maps_fd);
  if (maps_err != 0) return {maps_err};
  const int mem = ::open((base + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (mem < 0) return {errno};
  // Scanning "self" finds MARKER in this process's own argv: the positive control.
  std::size_t start = 0;
  int found = 0;
  long first_err = 0;
  bool any_read = false;
  while (start < maps.size() && found == 0) {
    auto end = maps.find('\n', start);
    if (end == std::string::npos) end = maps.size();
    const std::string line = maps.substr(start, end - start);
    start = end + 1;
    unsigned long lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &lo, &hi, perms) != 3 || perms[0] != 'r') continue;
    if (line.find("[vvar") != std::string::npos) continue;  // reading it faults
    std::string region;
    for (unsigned long at = lo; at < hi;) {
      char buf[65536];
      const std::size_t want = std::min<unsigned long>(sizeof buf, hi - at);
      const ssize_t n = ::pread(mem, buf, want, static_cast<off_t>(at));
      if (n <= 0) {
        if (n < 0 && first_err == 0) first_err = errno;
        break;
      }
      any_read = true;
      region.append(buf, static_cast<std::size_t>(n));
      at += static_cast<unsigned long>(n);
    }
    if (region.find(marker) != std::string::npos) found = 1;
  }
  ::close(mem);
  if (!any_read) return {first_err != 0 ? first_err : EIO};
  return {0, found};
}

Answer write_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return {errno};
  const long err = ::write(fd, "escaped\n", 8) == 8 ? 0 : errno;
  ::close(fd);
  return {err};
}

long connect_tcp(const std::string& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(to_long(port)));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const long err = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

// Connects a fresh AF_UNIX socket (or, for "@NAME", an abstract one) and sends one
// byte, so the listener outside can tell a real connection. The errno of the first
// call that fails, 0 when connected.
sockaddr_un unix_address(const std::string& path, socklen_t* len) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const bool abstract = !path.empty() && path[0] == '@';
  const std::size_t n = std::min(path.size(), sizeof addr.sun_path - 1);
  std::memcpy(addr.sun_path, path.data(), n);
  if (abstract) addr.sun_path[0] = '\0';
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + (abstract ? 0 : 1));
  return addr;
}

long connect_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  socklen_t len = 0;
  const sockaddr_un addr = unix_address(path, &len);
  long err = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0 ? 0 : errno;
  if (err == 0 && ::write(fd, "x", 1) != 1) err = errno;
  ::close(fd);
  return err;
}

// A datagram socketpair is a socket too: connect() re-targets it to any path.
long socketpair_dgram_connect(const std::string& path) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0) return errno;
  socklen_t len = 0;
  const sockaddr_un addr = unix_address(path, &len);
  long err = ::connect(sv[0], reinterpret_cast<const sockaddr*>(&addr), len) == 0 ? 0 : errno;
  if (err == 0 && ::send(sv[0], "x", 1, 0) != 1) err = errno;
  ::close(sv[0]);
  ::close(sv[1]);
  return err;
}

long ptrace_attach(pid_t pid) {
  if (::syscall(SYS_ptrace, kPtraceAttach, pid, 0, 0) != 0) return errno;
  int status = 0;
  ::waitpid(pid, &status, __WALL);
  ::syscall(SYS_ptrace, 17 /*PTRACE_DETACH*/, pid, 0, 0);
  return 0;
}

// Attaching to one's own child: allowed wherever ptrace is, so it tells "ptrace is
// denied" from "this target is out of reach".
long ptrace_own_child() {
  const pid_t child = ::fork();
  if (child < 0) return errno;
  if (child == 0) {
    for (;;) ::pause();
  }
  const long err = ptrace_attach(child);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, __WALL);
  return err;
}

unsigned long unshare_flags(const std::string& names) {
  unsigned long flags = 0;
  for (std::size_t at = 0; at <= names.size();) {
    auto end = names.find(',', at);
    if (end == std::string::npos) end = names.size();
    const std::string n = names.substr(at, end - at);
    at = end + 1;
    if (n == "user") flags |= CLONE_NEWUSER;
    if (n == "mnt") flags |= CLONE_NEWNS;
    if (n == "net") flags |= CLONE_NEWNET;
    if (n == "pid") flags |= CLONE_NEWPID;
    if (n == "ipc") flags |= CLONE_NEWIPC;
    if (n == "uts") flags |= CLONE_NEWUTS;
    if (n == "cgroup") flags |= CLONE_NEWCGROUP;
  }
  return flags;
}

long setns_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  const long err = ::setns(fd, 0) == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

long close_result(long fd) {
  if (fd < 0) return errno;
  ::close(static_cast<int>(fd));
  return 0;
}

// A "user" key in the process keyring, which goes away with this process.
long add_key_for_real() {
  constexpr long kProcessKeyring = -2;  // KEY_SPEC_PROCESS_KEYRING
  return raw(::syscall(SYS_add_key, "user", "delegate-escape-test", "x", 1, kProcessKeyring));
}

long bpf_map_for_real() {
  bpf_attr attr{};
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = 1;
  return close_result(::syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
}

// A software counter on this process, user space only: allowed at perf_event_paranoid 2.
long perf_event_for_real() {
  perf_event_attr attr{};
  attr.type = PERF_TYPE_SOFTWARE;
  attr.size = sizeof attr;
  attr.config = PERF_COUNT_SW_TASK_CLOCK;
  attr.exclude_kernel = 1;
  attr.exclude_hv = 1;
  return close_result(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}

long io_uring_for_real() {
  io_uring_params params{};
  return close_result(::syscall(SYS_io_uring_setup, 4, &params));
}

struct Action {
  std::size_t args;
  std::function<Answer(const Args&)> run;
};

const std::map<std::string, Action>& actions() {
  static const std::map<std::string, Action> table = {
      {"ptrace_attach_pid", {1, [](const Args& a) { return Answer{ptrace_attach(static_cast<pid_t>(to_long(a[0])))}; }}},
      {"ptrace_own_child", {0, [](const Args&) { return Answer{ptrace_own_child()}; }}},
      {"kill", {2, [](const Args& a) {
         return Answer{raw(::kill(static_cast<pid_t>(to_long(a[0])), static_cast<int>(to_long(a[1]))))};
       }}},
      {"connect_tcp", {1, [](const Args& a) { return Answer{connect_tcp(a[0])}; }}},
      {"connect_unix", {1, [](const Args& a) { return Answer{connect_unix(a[0])}; }}},
      {"socketpair_dgram_connect", {1, [](const Args& a) { return Answer{socketpair_dgram_connect(a[0])}; }}},
      {"find_in_file", {2, [](const Args& a) { return find_in_file(a[0], a[1]); }}},
      {"find_in_mem", {2, [](const Args& a) { return find_in_mem(a[0], a[1]); }}},
      {"write_file", {1, [](const Args& a) { return write_file(a[0]); }}},
      {"mount_tmpfs", {1, [](const Args& a) { return Answer{raw(::mount("none", a[0].c_str(), "tmpfs", 0, nullptr))}; }}},
      // Re-mount read-write: what a step would try on its read-only view.
      {"remount_rw", {1, [](const Args& a) {
         return Answer{raw(::mount(nullptr, a[0].c_str(), nullptr, MS_REMOUNT | MS_BIND, nullptr))};
       }}},
      {"umount2_path", {1, [](const Args& a) { return Answer{raw(::umount2(a[0].c_str(), MNT_DETACH))}; }}},
      {"pivot_root_path", {2, [](const Args& a) {
         return Answer{raw(::syscall(SYS_pivot_root, a[0].c_str(), a[1].c_str()))};
       }}},
      {"chroot_path", {1, [](const Args& a) { return Answer{raw(::chroot(a[0].c_str()))}; }}},
      {"unshare_ns", {1, [](const Args& a) { return Answer{raw(::unshare(static_cast<int>(unshare_flags(a[0]))))}; }}},
      {"setns_path", {1, [](const Args& a) { return Answer{setns_path(a[0])}; }}},
      {"open_rw", {1, [](const Args& a) { return Answer{close_result(::open(a[0].c_str(), O_RDWR | O_CLOEXEC))}; }}},
      {"add_key_real", {0, [](const Args&) { return Answer{add_key_for_real()}; }}},
      {"bpf_map_real", {0, [](const Args&) { return Answer{bpf_map_for_real()}; }}},
      {"perf_event_real", {0, [](const Args&) { return Answer{perf_event_for_real()}; }}},
      {"io_uring_real", {0, [](const Args&) { return Answer{io_uring_for_real()}; }}},
  };
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: delegate-syscall-prober NAME | --list | ACTION [ARG...]\n");
    return 2;
  }
  const std::string name = argv[1];
  if (const auto action = actions().find(name); action != actions().end()) {
    const Args args(argv + 2, argv + argc);
    if (args.size() != action->second.args) {
      std::fprintf(stderr, "%s takes %zu argument(s)\n", name.c_str(), action->second.args);
      return 2;
    }
    std::string label = name;
    for (const auto& a : args) label += " " + a;
    errno = 0;
    const Answer answer = action->second.run(args);
    if (answer.found >= 0) {
      std::printf("%s errno=%ld found=%d\n", label.c_str(), answer.err, answer.found);
    } else {
      std::printf("%s errno=%ld\n", label.c_str(), answer.err);
    }
    return 0;
  }
  if (argc != 2) {
    std::fprintf(stderr, "usage: delegate-syscall-prober NAME | --list | ACTION [ARG...]\n");
    return 2;
  }
  if (name == "--list") {
    for (const auto& [n, _] : probes()) std::printf("%s\n", n.c_str());
    return 0;
  }
  // "personality=0xVALUE": the raw 64-bit argument, for the allow-list edge cases.
  if (name.starts_with("personality=")) {
    const unsigned long v = std::strtoul(name.c_str() + 12, nullptr, 0);
    std::printf("%s errno=%ld\n", name.c_str(), raw(::syscall(SYS_personality, v)));
    return 0;
  }
  const auto it = probes().find(name);
  if (it == probes().end()) {
    std::fprintf(stderr, "unknown probe %s\n", name.c_str());
    return 2;
  }
  errno = 0;
  const long err = it->second();
  std::printf("%s errno=%ld\n", name.c_str(), err);
  return 0;
}
