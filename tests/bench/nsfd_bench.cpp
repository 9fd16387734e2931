// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfd's benchmark suite: every figure of BENCHMARKS.md, measured in one run
// against a private dbus-daemon and nsfdd, all pinned to one CPU with this
// program. Run as root (scripts/bench does, and writes BENCHMARKS.md): it
// starts the bus and nsfdd itself, and runs callers as the unprivileged user
// nsfd-test-a (scripts/test-users creates it), for whom authorization runs.
//
// Prints Markdown on stdout; progress on stderr.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sdbus-c++/sdbus-c++.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "child.hpp"
#include "harness.hpp"
#include "nsfd/dbus_names.hpp"
#include "nsfd/pidfd.hpp"
#include "varlink/socket_io.hpp"

namespace nsfd::bench {
namespace {

using Clock = std::chrono::steady_clock;
using test::BusKind;
using test::Daemon;
using test::rssKiB;
using test::TestBus;
using Results = std::map<std::string, double>;

// How many calls or runs each figure takes; --quick divides them by ten.
struct Scale {
    int calls = 20000;               // latency medians
    int tracked = 10000;             // figures 5 to 7
    int exits = 500;                 // figure 9
    int starts = 25;                 // figure 8
    int commands = 200;              // figure 10
    double throughputSeconds = 2.0;  // figure 4, per phase
    std::vector<int> only;           // --only N: just the step that measures figure N
};

void progress(const std::string& what) {
    (void)std::fprintf(stderr, "nsfd-bench: %s\n", what.c_str());
}

double micros(Clock::duration d) {
    return std::chrono::duration<double, std::micro>(d).count();
}

double median(std::vector<double> samples) {
    if (samples.empty()) {
        return 0;
    }
    auto middle = samples.begin() + static_cast<std::ptrdiff_t>(samples.size() / 2);
    std::nth_element(samples.begin(), middle, samples.end());
    return *middle;
}

// Median latency of `call`, in microseconds.
double medianLatency(int count, const std::function<void()>& call) {
    std::vector<double> samples;
    samples.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        Clock::time_point start = Clock::now();
        call();
        samples.push_back(micros(Clock::now() - start));
    }
    return median(std::move(samples));
}

// Medians of two measurements taken alternately, so drift touches both alike.
std::pair<double, double> alternatingMedians(int rounds, const std::function<double()>& a,
                                             const std::function<double()>& b) {
    std::vector<double> as, bs;
    for (int i = 0; i < rounds; ++i) {
        as.push_back(a());
        bs.push_back(b());
    }
    return {median(std::move(as)), median(std::move(bs))};
}

// CPU time (ns) all threads of `pid` have run, from schedstat.
double cpuNanos(pid_t pid) {
    double total = 0;
    std::error_code ec;
    std::string dir = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& task : std::filesystem::directory_iterator(dir, ec)) {
        std::ifstream in(task.path() / "schedstat");
        double ns = 0;
        if (in >> ns) {
            total += ns;
        }
    }
    return total;
}

std::string firstLineOf(const std::vector<std::string>& argv) {
    std::string out = test::run(argv).second;
    return out.substr(0, out.find('\n'));
}

// The unprivileged caller of the figures where authorization matters.
struct TestUser {
    uid_t uid;
    gid_t gid;
};

TestUser testUser() {
    struct passwd* pw = ::getpwnam("nsfd-test-a");
    if (pw == nullptr) {
        throw std::runtime_error("no user nsfd-test-a: run scripts/test-users first");
    }
    return {pw->pw_uid, pw->pw_gid};
}

// In a forked child: becomes `user`, dumpable again, as a program this user
// started would be; _exits if it cannot.
void becomeTestUser(const TestUser& user) {
    if (::setgroups(0, nullptr) < 0 || ::setresgid(user.gid, user.gid, user.gid) < 0 ||
        ::setresuid(user.uid, user.uid, user.uid) < 0 || ::prctl(PR_SET_DUMPABLE, 1) < 0) {
        ::_exit(2);
    }
}

// Runs `fn` in a child as nsfd-test-a with its own bus connection; the child
// reports "key value" lines, which come back as Results.
Results asUnprivileged(const std::function<Results(sdbus::IConnection&)>& fn) {
    TestUser user = testUser();
    auto [status, out] = test::forkAndRead([&](int fd) {
        becomeTestUser(user);
        std::string text;
        try {
            auto connection = sdbus::createSystemBusConnection();
            for (const auto& [key, value] : fn(*connection)) {
                text += key + " " + std::to_string(value) + "\n";
            }
        } catch (const std::exception& e) {
            text = std::string("error ") + e.what();
        }
        (void)!::write(fd, text.data(), text.size());
        ::_exit(0);
    });
    Results results;
    std::istringstream in(out);
    std::string key;
    double value = 0;
    while (in >> key) {
        if (key == "error") {
            throw std::runtime_error("unprivileged caller failed:" + out.substr(5));
        }
        in >> value;
        results[key] = value;
    }
    if (status != 0) {
        throw std::runtime_error("unprivileged caller exited with status " +
                                 std::to_string(status));
    }
    return results;
}

// Processes that wait, doing nothing, until destroyed: targets to track.
class Sleepers {
  public:
    explicit Sleepers(int count) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) < 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        UniqueFd readEnd(fds[0]);
        hold_ = UniqueFd(fds[1]);
        pids_.reserve(static_cast<std::size_t>(count));
        for (int i = 0; i < count; ++i) {
            pid_t pid = test::forkProcess();
            if (pid == 0) {
                hold_.reset();
                char c;
                (void)!::read(readEnd.get(), &c, 1);  // returns at EOF: when released
                ::_exit(0);
            }
            if (pid < 0) {
                throw std::system_error(errno, std::generic_category(), "fork");
            }
            pids_.push_back(pid);
        }
    }
    ~Sleepers() {
        hold_.reset();
        for (pid_t pid : pids_) {
            int status = 0;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }
    }
    Sleepers(const Sleepers&) = delete;
    Sleepers& operator=(const Sleepers&) = delete;
    const std::vector<pid_t>& pids() const { return pids_; }

  private:
    UniqueFd hold_;
    std::vector<pid_t> pids_;
};

std::unique_ptr<sdbus::IProxy> managerProxy(sdbus::IConnection& connection) {
    return sdbus::createProxy(connection, dbus::kBusName, dbus::kManagerPath);
}

void getNamespace(sdbus::IProxy& manager, uint32_t pid, const std::string& type) {
    sdbus::UnixFd fd;
    manager.callMethod("GetNamespace")
        .onInterface(dbus::kManagerInterface)
        .withArguments(pid, type)
        .storeResultsTo(fd);
}

void ping(sdbus::IProxy& proxy) {
    proxy.callMethod("Ping").onInterface("org.freedesktop.DBus.Peer");
}

struct Row {
    int number;  // as in the issue that set the targets
    std::string figure;
    std::string measured;
    double value;
    std::string target;
    bool met;
    const char* line = "";  // "b": a figure's second line, another ratio of the same call
};

// nsfdd with an empty configuration, logging only warnings, serving Varlink at `varlink`.
Daemon::Options quiet(const std::string& varlink = "") {
    return {"", {}, "warn", 0, varlink};
}

// A blocking Varlink client of the least cost: one call, its reply read to the
// NUL, its fds closed. Not libnsfd-client: the floor of a Varlink call.
class VarlinkCaller {
  public:
    explicit VarlinkCaller(const std::string& path)
        : socket_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        struct sockaddr_un addr {};
        addr.sun_family = AF_UNIX;
        path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
        if (!socket_.ok() ||
            ::connect(socket_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
            throw std::system_error(errno, std::generic_category(), "connect to " + path);
        }
    }
    // On a connected stream socket (one end of a socketpair).
    explicit VarlinkCaller(UniqueFd socket) : socket_(std::move(socket)) {}

    // Sends `message` (ended by its NUL) and reads the reply; throws if it is an error.
    std::string call(const std::string& message) {
        send(message);
        return receive();
    }

    void send(const std::string& message) {
        if (::send(socket_.get(), message.data(), message.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(message.size())) {
            throw std::system_error(errno, std::generic_category(), "send");
        }
    }

    // The next reply, without its NUL; throws if it is an error.
    std::string receive() {
        std::string reply;
        while (reply.empty() || reply.back() != '\0') {
            char buffer[4096];
            pollfd p{socket_.get(), POLLIN, 0};
            varlink::Received received;  // the reply's fds close with it
            int r = ::poll(&p, 1, -1) < 0
                        ? -errno
                        : varlink::receiveWithFds(socket_.get(), buffer, received);
            if (r == -EAGAIN || r == -EINTR) {
                continue;
            }
            if (r < 0 || received.bytes == 0) {
                throw std::runtime_error("nsfdd hung up");
            }
            reply.append(buffer, received.bytes);
        }
        reply.pop_back();
        if (reply.find("\"error\"") != std::string::npos) {
            throw std::runtime_error("Varlink error: " + reply);
        }
        return reply;
    }

    // Whether a reply starts to arrive within `timeout`.
    bool readable(std::chrono::milliseconds timeout) const {
        struct pollfd pfd = {socket_.get(), POLLIN, 0};
        return ::poll(&pfd, 1, static_cast<int>(timeout.count())) > 0;
    }

  private:
    UniqueFd socket_;
};

// The number after "key": in a reply (ids and pids are all we read).
std::string numberIn(const std::string& reply, const std::string& key) {
    std::size_t at = reply.find("\"" + key + "\":");
    if (at == std::string::npos) {
        throw std::runtime_error("no " + key + " in " + reply);
    }
    at += key.size() + 3;
    return reply.substr(at, reply.find_first_not_of("0123456789", at) - at);
}

// A process answering every message on a socket with `reply`, unparsed, and
// nothing else: the floor of a round trip on a Unix socket (figure 11) or of
// one message (figure 14), on the same CPU. Ends when its socket is closed.
class BareResponder {
  public:
    enum class Mode {
        Answer,        // `reply` to each message
        AnswerWithFd,  // `reply` to each message, with an fd (SCM_RIGHTS) as nsfdd sends one
        OnTrigger,     // `reply` at each fire(), reading nothing
    };
    explicit BareResponder(const std::string& reply, Mode mode = Mode::Answer) {
        int pair[2], wake[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0 ||
            ::pipe2(wake, O_CLOEXEC) < 0) {
            throw std::system_error(errno, std::generic_category(), "socketpair");
        }
        UniqueFd ours(pair[0]), theirs(pair[1]), triggerRead(wake[0]);
        trigger_ = UniqueFd(wake[1]);
        // What it passes: a namespace fd, held open, as nsfdd's reply carries.
        UniqueFd passed(
            mode == Mode::AnswerWithFd ? ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC) : -1);
        if (mode == Mode::AnswerWithFd && !passed.ok()) {
            throw std::system_error(errno, std::generic_category(), "open /proc/self/ns/net");
        }
        pid_ = test::forkProcess();
        if (pid_ == 0) {
            ours.reset();
            trigger_.reset();
            bool onTrigger = mode == Mode::OnTrigger;
            int wakeUp = onTrigger ? triggerRead.get() : theirs.get();
            std::vector<int> fds;
            if (passed.ok()) {
                fds.push_back(passed.get());
            }
            iovec iov{const_cast<char*>(reply.c_str()), reply.size() + 1};
            for (char buffer[4096];;) {
                ssize_t n = ::read(wakeUp, buffer, sizeof(buffer));
                if (n <= 0) {
                    ::_exit(0);
                }
                if (onTrigger || buffer[n - 1] == '\0') {
                    (void)varlink::sendWithFds(theirs.get(), std::span(&iov, 1), fds);
                }
            }
        }
        if (pid_ < 0) {
            throw std::system_error(errno, std::generic_category(), "fork");
        }
        socket_ = std::move(ours);
    }
    ~BareResponder() {
        socket_.reset();
        trigger_.reset();
        ::waitpid(pid_, nullptr, 0);
    }
    BareResponder(const BareResponder&) = delete;
    BareResponder& operator=(const BareResponder&) = delete;

    // Our end of the socket, once.
    UniqueFd takeSocket() { return std::move(socket_); }
    void fire() { (void)!::write(trigger_.get(), "x", 1); }

  private:
    UniqueFd socket_;
    UniqueFd trigger_;
    pid_t pid_ = -1;
};

std::string varlinkCall(const std::string& method, const std::string& parameters,
                        bool more = false) {
    return "{\"method\":\"org.nsfd1.Manager." + method + "\",\"parameters\":" + parameters +
           (more ? ",\"more\":true}" : "}") + std::string(1, '\0');
}

class Suite {
  public:
    Suite(Scale scale, BusKind busKind) : scale_(std::move(scale)), busKind_(busKind) {}

    void run() {
        progress("starting a private " + busName() + " and nsfdd");
        bus_ = std::make_unique<TestBus>(busKind_);
        ::setenv("DBUS_SYSTEM_BUS_ADDRESS", bus_->address().c_str(), 1);
        char dir[] = "/tmp/nsfd-bench-XXXXXX";
        if (::mkdtemp(dir) == nullptr || ::chmod(dir, 0755) < 0) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp");
        }
        varlinkDir_ = dir;
        varlink_ = varlinkDir_ + "/org.nsfd1.Manager";
        daemon_ = std::make_unique<Daemon>(bus_->address(), quiet(varlink_));
        connection_ = sdbus::createSystemBusConnection();
        manager_ = managerProxy(*connection_);

        // Each step measures the figures beside it; --only N runs the one that measures N.
        auto wanted = [&](std::initializer_list<int> figures) {
            return scale_.only.empty() ||
                   std::any_of(figures.begin(), figures.end(), [&](int figure) {
                       return std::find(scale_.only.begin(), scale_.only.end(), figure) !=
                              scale_.only.end();
                   });
        };
        if (wanted({1, 2, 11, 12, 16, 17})) {
            latencyAndProfile();
        }
        if (wanted({3})) {
            inProcess();
        }
        if (wanted({4})) {
            throughput();
        }
        if (wanted({9})) {
            exitLatency();
        }
        if (wanted({13})) {
            varlinkThroughput();
        }
        if (wanted({14})) {
            watchExitsLatency();
        }
        if (wanted({10, 15})) {
            commandLine(wanted({10}), wanted({15}));
        }
        if (wanted({18})) {
            brokeredExec();
        }
        if (wanted({8})) {
            startup();
        }
        if (wanted({5, 6, 7})) {
            scale();
        }
        if (value("varlink_get_namespace_us") > 0 && value("in_process_us") > 0) {
            double vl = value("varlink_get_namespace_us"), local = value("in_process_us");
            rows_.push_back(
                {16, "`GetNamespace` over Varlink / libnsfd in-process (figure 3's work)",
                 format("%.1f us / %.2f us", vl, local), vl / local, "report: the floor", true});
        }
        daemon_.reset();
        std::filesystem::remove_all(varlinkDir_);
    }

    std::string busName() const {
        return busKind_ == BusKind::DbusBroker ? "dbus-broker" : "dbus-daemon";
    }

    void print(const std::string& heading) const {
        struct utsname uts {};
        ::uname(&uts);
        std::string cpu;
        std::ifstream cpuinfo("/proc/cpuinfo");
        for (std::string line; std::getline(cpuinfo, line);) {
            if (line.rfind("model name", 0) == 0) {
                cpu = line.substr(line.find(':') + 2);
                break;
            }
        }
        std::printf("## %s\n\n", heading.c_str());
        std::printf(
            "Machine: %s, %ld CPUs, kernel %s; %s; nsfd %s. The bus daemon, nsfdd "
            "and the callers all run on CPU 0; each ratio is of two medians measured "
            "in this one run.\n\n",
            cpu.c_str(), ::sysconf(_SC_NPROCESSORS_ONLN), uts.release,
            firstLineOf({busName(), "--version"}).c_str(), NSFD_TEST_VERSION);
        std::printf("| # | figure | measured | value | target | |\n|---|---|---|---|---|---|\n");
        std::vector<Row> rows = rows_;
        std::sort(rows.begin(), rows.end(),
                  [](const Row& a, const Row& b) { return a.number < b.number; });
        for (const Row& row : rows) {
            std::printf("| %d%s | %s | %s | %.3g | %s | %s |\n", row.number, row.line,
                        row.figure.c_str(), row.measured.c_str(), row.value, row.target.c_str(),
                        row.met ? "met" : "**missed**");
        }
        std::printf("\n## Where a call's time goes\n\n");
        std::printf(
            "CPU time per call of each process (from /proc/PID/task/*/schedstat, "
            "kernel time included), in the latency runs of figures 1, 2, 11 and 12:\n\n");
        std::printf(
            "| call | wall (median) | caller | %s | nsfdd |\n"
            "|---|---|---|---|---|\n",
            busName().c_str());
        for (const char* call : {"ping_bus", "ping_nsfdd", "get_namespace", "get_namespaces",
                                 "varlink_get_namespace", "varlink_get_namespaces"}) {
            std::string key = call;
            std::printf("| %s | %.1f us | %.1f us | %.1f us | %.1f us |\n", labelOf(call).c_str(),
                        value(key + "_us"), value(key + "_cpu_client"), value(key + "_cpu_bus"),
                        value(key + "_cpu_daemon"));
        }
        std::printf(
            "\nThe floor of any call to nsfdd on this bus, a Peer.Ping that sd-bus "
            "answers inside nsfdd, is %.2f times a Peer.Ping to the bus itself.\n\n",
            floor_);
    }

  private:
    std::string labelOf(const std::string& call) const {
        if (call == "ping_bus")
            return "Peer.Ping to " + busName();
        if (call == "ping_nsfdd")
            return "Peer.Ping to nsfdd (no-op)";
        if (call == "get_namespace")
            return "GetNamespace";
        if (call == "get_namespaces")
            return "GetNamespaces (all ten)";
        if (call == "varlink_get_namespace")
            return "GetNamespace over Varlink (no bus)";
        return "GetNamespaces (all ten) over Varlink (no bus)";
    }

    double value(const std::string& key) const {
        auto it = measured_.find(key);
        return it == measured_.end() ? 0 : it->second;
    }

    void add(int number, std::string figure, std::string measured, double value, double target,
             bool atMost, const char* line = "") {
        char targetText[32];
        (void)std::snprintf(targetText, sizeof(targetText), "%s %.3g",
                            atMost ? "<=" : ">=", target);
        rows_.push_back({number, std::move(figure), std::move(measured), value, targetText,
                         atMost ? value <= target : value >= target, line});
    }

    template <typename... Numbers>
    static std::string format(const char* pattern, Numbers... numbers) {
        static_assert((std::is_same_v<Numbers, double> && ...), "the patterns take doubles");
        char buf[320];
        (void)std::snprintf(buf, sizeof(buf), pattern, numbers...);
        return buf;
    }

    // Figures 1 and 2, and the CPU split of each call.
    void latencyAndProfile() {
        progress("figures 1 and 2: latency of GetNamespace(s) and Ping");
        pid_t busPid = bus_->routerPid();
        pid_t daemonPid = daemon_->pid();
        int count = scale_.calls;
        std::string varlinkPath = varlink_;
        Results r = asUnprivileged([=](sdbus::IConnection& connection) {
            auto bus =
                sdbus::createProxy(connection, "org.freedesktop.DBus", "/org/freedesktop/DBus");
            auto manager = managerProxy(connection);
            auto self = static_cast<uint32_t>(::getpid());
            std::vector<std::string> all;  // empty: every type
            VarlinkCaller varlink(varlinkPath);
            // The floor passes an fd as nsfdd does: that cost is the call's, not nsfdd's.
            BareResponder responder("{\"parameters\":{\"fileDescriptor\":0}}",
                                    BareResponder::Mode::AnswerWithFd);
            VarlinkCaller bare(responder.takeSocket());
            std::string selfPid = std::to_string(self);
            std::string oneNs =
                varlinkCall("GetNamespace", "{\"pid\":" + selfPid + ",\"type\":\"net\"}");
            std::string allNs = varlinkCall("GetNamespaces", "{\"pid\":" + selfPid + "}");
            // Figure 17: an inet stream socket in the caller's own network
            // namespace (the kernel rule allows it), made by nsfd-helper as the
            // caller. The first call also starts the helper (nsfdd by hand).
            std::string socket = varlinkCall(
                "OpenSocket", "{\"pid\":" + selfPid + ",\"family\":2,\"type\":1,\"protocol\":0}");
            auto firstStart = std::chrono::steady_clock::now();
            varlink.call(socket);
            double firstSocketUs = std::chrono::duration<double, std::micro>(
                                       std::chrono::steady_clock::now() - firstStart)
                                       .count();
            std::map<std::string, std::function<void()>> calls = {
                {"varlink_open_socket", [&] { varlink.call(socket); }},
                {"ping_bus", [&] { ping(*bus); }},
                {"ping_nsfdd", [&] { ping(*manager); }},
                {"get_namespace", [&] { getNamespace(*manager, self, "net"); }},
                {"get_namespaces",
                 [&] {
                     std::map<std::string, sdbus::UnixFd> fds;
                     manager->callMethod("GetNamespaces")
                         .onInterface(dbus::kManagerInterface)
                         .withArguments(self, all)
                         .storeResultsTo(fds);
                 }},
                {"varlink_get_namespace", [&] { varlink.call(oneNs); }},
                {"varlink_get_namespaces", [&] { varlink.call(allNs); }},
                {"socket_round_trip", [&] { bare.call(oneNs); }},
            };
            Results out;
            out["varlink_open_socket_first_us"] = firstSocketUs;
            for (auto& [name, call] : calls) {
                medianLatency(count / 20, call);  // warm up
            }
            // Two rounds, interleaved, so drift touches every call alike; the lower median counts.
            for (int round = 0; round < 2; ++round) {
                for (auto& [name, call] : calls) {
                    double client = cpuNanos(::getpid()), bus = cpuNanos(busPid),
                           daemon = cpuNanos(daemonPid);
                    double us = medianLatency(count / 2, call);
                    double perCall = 1000.0 * count / 2;
                    if (round == 0 || us < out[name + "_us"]) {
                        out[name + "_us"] = us;
                        out[name + "_cpu_client"] = (cpuNanos(::getpid()) - client) / perCall;
                        out[name + "_cpu_bus"] = (cpuNanos(busPid) - bus) / perCall;
                        out[name + "_cpu_daemon"] = (cpuNanos(daemonPid) - daemon) / perCall;
                    }
                }
            }
            return out;
        });
        measured_.insert(r.begin(), r.end());
        auto [kernelOne, kernelTen] = kernelPart();
        double ns = r["get_namespace_us"], pingBus = r["ping_bus_us"];
        add(1, "`GetNamespace` (allowed non-root caller) / `Peer.Ping` to the bus",
            format("%.1f us / %.1f us", ns, pingBus), ns / pingBus, 2.0, true);
        add(2, "`GetNamespaces` of all ten types / one `GetNamespace`",
            format("%.1f us / %.1f us", r["get_namespaces_us"], ns), r["get_namespaces_us"] / ns,
            1.5, true);
        floor_ = r["ping_nsfdd_us"] / pingBus;
        double vl = r["varlink_get_namespace_us"];
        add(11, "`GetNamespace` over Varlink (allowed non-root caller) / `Peer.Ping` to the bus",
            format("%.1f us / %.1f us (floor: a bare round trip on a Unix socket passing one fd "
                   "%.1f us, plus the kernel's part of the call, in-process %.1f us)",
                   vl, pingBus, r["socket_round_trip_us"], kernelOne),
            vl / pingBus, 1.0, true);
        // nsfdd's own part of a call, as a ratio: the call against what no
        // server could spare (the round trip, with its fd, and the kernel's part).
        double floor = r["socket_round_trip_us"] + kernelOne;
        add(11,
            "`GetNamespace` over Varlink (allowed non-root caller) / its floor: a bare round "
            "trip on a Unix socket passing one fd, plus the kernel's part of the call",
            format("%.1f us / %.1f us (%.1f us + %.1f us)", vl, floor, r["socket_round_trip_us"],
                   kernelOne),
            vl / floor, 1.15, true, "b");
        double socketUs = r["varlink_open_socket_us"];
        add(17,
            "`OpenSocket` (inet stream) over Varlink / `GetNamespace` over Varlink (allowed "
            "non-root caller)",
            format("%.1f us / %.1f us (first call, starting nsfd-helper and its worker: %.0f us; "
                   "bound by the one extra hop, nsfdd to the worker kept for this caller "
                   "and namespace, socket(2) itself, and the socket passed twice)",
                   socketUs, vl, r["varlink_open_socket_first_us"]),
            socketUs / vl, 3.0, true);
        add(12, "`GetNamespaces` of all ten types over Varlink / one `GetNamespace` over Varlink",
            format("%.1f us / %.1f us (the kernel's part, in-process: %.1f us for ten, %.1f us "
                   "for one)",
                   r["varlink_get_namespaces_us"], vl, kernelTen, kernelOne),
            r["varlink_get_namespaces_us"] / vl, 1.5, true);
    }

    // The kernel's part of figures 11 and 12 (and of 1 and 2): the syscalls nsfdd
    // makes for an allowed non-root caller's GetNamespace, here in-process, as
    // root, on a dumpable process of nsfd-test-a: pidfd_open, the pidfs id
    // (fstat), PIDFD_GET_INFO, the stat of /proc/PID/status and the poll of the
    // kernel rule, the namespace ioctl (ten for GetNamespaces) and the closes.
    // Medians of batches of 100, in microseconds: {one, ten}.
    std::pair<double, double> kernelPart() {
        TestUser user = testUser();
        // clone3 copies one thread of a threaded process: raw syscalls, not glibc's setxid.
        test::Child target = test::Child::spawn([user] {
            if (::syscall(SYS_setgroups, 0, nullptr) < 0 ||
                ::syscall(SYS_setresgid, user.gid, user.gid, user.gid) < 0 ||
                ::syscall(SYS_setresuid, user.uid, user.uid, user.uid) < 0 ||
                ::prctl(PR_SET_DUMPABLE, 1) < 0) {
                return errno;
            }
            return 0;
        });
        std::string status = "/proc/" + std::to_string(target.pid()) + "/status";
        auto asNsfdd = [&](bool all) {
            PidFd pidfd = PidFd::open(target.pid());
            (void)pidfd.id();
            (void)pidfd.credentials();
            struct stat st {};
            if (::stat(status.c_str(), &st) < 0 || pidfd.hasExited()) {
                throw std::runtime_error("the target of the kernel's part is gone");
            }
            std::vector<NsFd> fds;
            for (NsType type : allNsTypes()) {
                if (all || type == NsType::Net) {
                    try {
                        fds.push_back(pidfd.namespaceFd(type));
                    } catch (const std::system_error& e) {
                        if (e.code() != std::errc::operation_not_supported) {
                            throw;
                        }
                    }
                }
            }
        };
        auto batch = [&](bool all) {
            Clock::time_point start = Clock::now();
            for (int i = 0; i < 100; ++i) {
                asNsfdd(all);
            }
            return micros(Clock::now() - start) / 100;
        };
        auto [one, ten] = alternatingMedians(
            scale_.calls / 50, [&] { return batch(false); }, [&] { return batch(true); });
        target.release(0);
        target.reap();
        return {one, ten};
    }

    // Figure 3: libnsfd against the same syscalls by hand, in batches of 100.
    void inProcess() {
        progress("figure 3: libnsfd in-process against raw syscalls");
        test::Child target = test::Child::spawn();
        pid_t pid = target.pid();
        auto library = [pid] { NsFd ns = PidFd::open(pid).namespaceFd(NsType::Net); };
        auto raw = [pid] {
            int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
            int ns = ::ioctl(pidfd, _IO(0xFF, 4), 0);  // PIDFD_GET_NET_NAMESPACE
            ::close(ns);
            ::close(pidfd);
        };
        auto batch = [](const std::function<void()>& call) {
            Clock::time_point start = Clock::now();
            for (int i = 0; i < 100; ++i) {
                call();
            }
            return micros(Clock::now() - start) / 100;
        };
        auto [a, b] = alternatingMedians(
            scale_.calls / 10, [&] { return batch(library); }, [&] { return batch(raw); });
        measured_["in_process_us"] = a;
        add(3, "libnsfd `PidFd::open` + `namespaceFd` + close / the raw syscalls",
            format("%.2f us / %.2f us", a, b), a / b, 1.05, true);
        target.release(0);
        target.reap();
    }

    // Figure 4: calls per second with 1, 2, 4, 8 connections, each its own process.
    void throughput() {
        double worst = 1e9;
        std::string text;
        for (int connections : {1, 2, 4, 8}) {
            progress("figure 4: throughput with " + std::to_string(connections) + " connections");
            double ns = callsPerSecond(connections, false, [] { return busCaller(true, true); });
            double noop = callsPerSecond(connections, false, [] { return busCaller(false, true); });
            worst = std::min(worst, ns / noop);
            text += format("%.0f / %.0f", ns, noop) + " (" + std::to_string(connections) + "), ";
        }
        text.resize(text.size() - 2);
        add(4,
            "calls/s, `GetNamespace` / no-op `Peer.Ping` to nsfdd, with 1, 2, 4, 8 connections "
            "(worst ratio)",
            text, worst, 0.9, false);
    }

    // Figure 13: figure 4's closed loops, as the allowed non-root caller (each
    // process asks for its own net namespace, as in figures 1 and 11), over
    // Varlink against over D-Bus. Pinned as every figure: callers, nsfdd and
    // the bus share CPU 0, so calls/s is the inverse of the CPU time all of
    // them spend on a call, not a measure of how the work spreads over CPUs.
    void varlinkThroughput() {
        double worst = 1e9;
        std::string text;
        std::string path = varlink_;
        for (int connections : {1, 2, 4, 8}) {
            progress("figure 13: Varlink and D-Bus throughput with " + std::to_string(connections) +
                     " connections");
            double overVarlink = callsPerSecond(connections, true, [path] {
                auto varlink = std::make_shared<VarlinkCaller>(path);
                std::string call =
                    varlinkCall("GetNamespace",
                                "{\"pid\":" + std::to_string(::getpid()) + ",\"type\":\"net\"}");
                varlink->call(call);
                return std::function<void()>([varlink, call] { varlink->call(call); });
            });
            double overBus =
                callsPerSecond(connections, true, [] { return busCaller(true, false); });
            worst = std::min(worst, overVarlink / overBus);
            text += format("%.0f / %.0f", overVarlink, overBus) + " (" +
                    std::to_string(connections) + "), ";
        }
        text.resize(text.size() - 2);
        add(13,
            "calls/s of `GetNamespace` (allowed non-root caller), over Varlink / over D-Bus, with "
            "1, 2, 4, 8 connections, each its own process, all on CPU 0 with nsfdd and the bus "
            "(worst ratio)",
            text, worst, 3.0, false);
    }

    // In a caller process of figure 4 or 13: its own bus connection, warmed up,
    // and the call to repeat: GetNamespace (of the bench, or of itself) or a
    // no-op Peer.Ping to nsfdd.
    static std::function<void()> busCaller(bool getNamespaces, bool ofParent) {
        struct Caller {
            std::unique_ptr<sdbus::IConnection> connection = sdbus::createSystemBusConnection();
            std::unique_ptr<sdbus::IProxy> manager = managerProxy(*connection);
        };
        auto caller = std::make_shared<Caller>();
        auto target = static_cast<uint32_t>(ofParent ? ::getppid() : ::getpid());
        ping(*caller->manager);
        return [caller, target, getNamespaces] {
            if (getNamespaces) {
                getNamespace(*caller->manager, target, "net");
            } else {
                ping(*caller->manager);
            }
        };
    }

    // Total calls per second of `connections` processes, each connecting with
    // `connect` (as nsfd-test-a if `unprivileged`), then repeating the call it
    // returned in a closed loop for the same time.
    double callsPerSecond(int connections, bool unprivileged,
                          const std::function<std::function<void()>()>& connect) {
        int go[2];
        if (::pipe2(go, O_CLOEXEC) < 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        UniqueFd goRead(go[0]), goWrite(go[1]);
        std::vector<std::pair<UniqueFd, pid_t>> callers;
        auto seconds = std::chrono::duration<double>(scale_.throughputSeconds);
        TestUser user = unprivileged ? testUser() : TestUser{0, 0};
        for (int i = 0; i < connections; ++i) {
            int out[2];
            if (::pipe2(out, O_CLOEXEC) < 0) {
                throw std::system_error(errno, std::generic_category(), "pipe2");
            }
            UniqueFd outRead(out[0]), outWrite(out[1]);
            pid_t pid = test::forkProcess();
            if (pid == 0) {
                goWrite.reset();
                if (unprivileged) {
                    becomeTestUser(user);
                }
                std::string text;
                try {
                    std::function<void()> call = connect();
                    char c;
                    (void)!::read(goRead.get(), &c, 1);  // EOF: go
                    long calls = 0;
                    Clock::time_point end =
                        Clock::now() + std::chrono::duration_cast<Clock::duration>(seconds);
                    while (Clock::now() < end) {
                        call();
                        ++calls;
                    }
                    text = std::to_string(calls);
                } catch (const std::exception& e) {
                    text = std::string("error ") + e.what();
                }
                (void)!::write(outWrite.get(), text.data(), text.size());
                ::_exit(0);
            }
            callers.emplace_back(std::move(outRead), pid);
        }
        ::usleep(200000);  // let them all connect
        goWrite.reset();
        double total = 0;
        std::string failed;
        for (auto& [out, pid] : callers) {
            char buf[256] = {};
            (void)!::read(out.get(), buf, sizeof(buf) - 1);
            if (std::strncmp(buf, "error", 5) == 0) {
                failed = buf;
            }
            total += std::atof(buf);
            int status = 0;
            ::waitpid(pid, &status, 0);
        }
        if (!failed.empty()) {
            throw std::runtime_error("a caller failed: " + failed);
        }
        return total / seconds.count();
    }

    // Figure 9: from our reap of a tracked child to ProcessExited reaching us.
    void exitLatency() {
        progress("figure 9: reap to ProcessExited");
        std::string lastPath;
        Clock::time_point received;
        auto proxy = managerProxy(*connection_);
        proxy->uponSignal("ProcessExited")
            .onInterface(dbus::kManagerInterface)
            .call([&](const sdbus::ObjectPath& path, uint32_t, uint64_t, int32_t) {
                lastPath = path;
                received = Clock::now();
            });
        proxy->finishRegistration();
        // The news go to subscribers only (until Unsubscribe below: no news
        // for this connection in the figures after this one).
        proxy->callMethod("Subscribe").onInterface(dbus::kManagerInterface);
        std::vector<double> samples;
        for (int i = 0; i < scale_.exits; ++i) {
            test::Child child = test::Child::spawn();
            sdbus::ObjectPath path;
            proxy->callMethod("TrackProcess")
                .onInterface(dbus::kManagerInterface)
                .withArguments(static_cast<uint32_t>(child.pid()))
                .storeResultsTo(path);
            child.release(0);
            child.awaitExit();
            // Let nsfdd see the exit (State "exited") before the clock starts.
            test::waitUntil(
                *connection_, [] { return false; }, std::chrono::milliseconds(2));
            Clock::time_point reaped = Clock::now();
            child.reap();
            if (!test::waitUntil(*connection_, [&] { return lastPath == path; })) {
                throw std::runtime_error("no ProcessExited for " + std::string(path));
            }
            samples.push_back(micros(received - reaped));
            proxy->callMethod("UntrackProcess")
                .onInterface(dbus::kManagerInterface)
                .withArguments(path);
        }
        proxy->callMethod("Unsubscribe").onInterface(dbus::kManagerInterface);
        auto bus =
            sdbus::createProxy(*connection_, "org.freedesktop.DBus", "/org/freedesktop/DBus");
        double pingUs = medianLatency(scale_.calls / 4, [&] { ping(*bus); });
        double exitUs = median(samples);
        double kernelUs = reapToPollHup();
        double relayUs = signalRelay();
        add(9, "reap to `ProcessExited` received / `Peer.Ping` to the bus",
            format("%.1f us / %.1f us", exitUs, pingUs) +
                format(" (floor: the kernel's reap to POLLHUP on a pidfd %.1f us, plus one "
                       "signal from a bare sdbus-c++ process woken by a pipe %.1f us; "
                       "medians of %.0f)",
                       kernelUs, relayUs, static_cast<double>(scale_.exits)),
            exitUs / pingUs, 3.0, true);
        measured_["signal_relay_us"] = relayUs;
        measured_["reap_to_pollhup_us"] = kernelUs;
    }

    // The floor of figure 9 on this bus: a minimal sdbus-c++ process, woken by
    // a pipe (as nsfdd is by a pidfd), sends one signal; from our write to the
    // pipe to the signal reaching us.
    double signalRelay() {
        int trigger[2], ready[2];
        if (::pipe2(trigger, O_CLOEXEC) < 0 || ::pipe2(ready, O_CLOEXEC) < 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        UniqueFd triggerRead(trigger[0]), triggerWrite(trigger[1]);
        UniqueFd readyRead(ready[0]), readyWrite(ready[1]);
        pid_t emitter = test::forkProcess();
        if (emitter == 0) {
            triggerWrite.reset();
            auto connection = sdbus::createSystemBusConnection();
            auto object = sdbus::createObject(*connection, "/org/nsfd1/bench");
            object->registerSignal("org.nsfd1.Bench", "Fired", "");
            object->finishRegistration();
            std::string name = connection->getUniqueName() + "\n";
            (void)!::write(readyWrite.get(), name.data(), name.size());
            for (char c; ::read(triggerRead.get(), &c, 1) == 1;) {
                object->emitSignal("Fired").onInterface("org.nsfd1.Bench");
            }
            ::_exit(0);
        }
        readyWrite.reset();
        std::string sender;
        for (char c; ::read(readyRead.get(), &c, 1) == 1 && c != '\n';) {
            sender += c;
        }
        auto proxy = sdbus::createProxy(*connection_, sender, "/org/nsfd1/bench");
        long fired = 0;
        Clock::time_point received;
        proxy->uponSignal("Fired").onInterface("org.nsfd1.Bench").call([&] {
            ++fired;
            received = Clock::now();
        });
        proxy->finishRegistration();
        std::vector<double> samples;
        for (int i = 0; i < scale_.exits; ++i) {
            test::waitUntil(
                *connection_, [] { return false; }, std::chrono::milliseconds(2));
            long before = fired;
            Clock::time_point sent = Clock::now();
            (void)!::write(triggerWrite.get(), "x", 1);
            if (!test::waitUntil(*connection_, [&] { return fired > before; })) {
                throw std::runtime_error("the emitter's signal did not arrive");
            }
            samples.push_back(micros(received - sent));
        }
        triggerWrite.reset();
        ::waitpid(emitter, nullptr, 0);
        return median(std::move(samples));
    }

    // Figure 14: figure 9 over Varlink, as the allowed non-root caller: it
    // tracks its own child, opens a WatchExits stream of that process ("more",
    // with the id), and times from its reap of the child to the stream's reply
    // reaching it.
    void watchExitsLatency() {
        progress("figure 14: reap to the WatchExits reply");
        std::string path = varlink_;
        Results r = asUnprivileged([this, path](sdbus::IConnection& connection) {
            VarlinkCaller varlink(path);
            std::vector<double> samples;
            for (int i = 0; i < scale_.exits; ++i) {
                test::Child child = test::Child::spawn();
                std::string id =
                    numberIn(varlink.call(varlinkCall(
                                 "TrackProcess", "{\"pid\":" + std::to_string(child.pid()) + "}")),
                             "id");
                varlink.send(varlinkCall("WatchExits", "{\"id\":" + id + "}", true));
                // nsfdd's first reply: the watch is in place.
                if (std::string ready = varlink.receive();
                    ready.find("\"ready\":true") == std::string::npos) {
                    throw std::runtime_error("WatchExits did not begin with ready: " + ready);
                }
                child.release(0);
                child.awaitExit();
                // Let nsfdd see the exit (State "exited") before the clock starts.
                if (varlink.readable(std::chrono::milliseconds(2))) {
                    throw std::runtime_error("WatchExits answered before the reap");
                }
                Clock::time_point reaped = Clock::now();
                child.reap();
                std::string reply = varlink.receive();
                Clock::time_point received = Clock::now();
                if (numberIn(reply, "id") != id) {
                    throw std::runtime_error("WatchExits told of another process: " + reply);
                }
                samples.push_back(micros(received - reaped));
                varlink.call(varlinkCall("UntrackProcess", "{\"id\":" + id + "}"));
            }
            auto bus =
                sdbus::createProxy(connection, "org.freedesktop.DBus", "/org/freedesktop/DBus");
            double pingUs = medianLatency(scale_.calls / 4, [&] { ping(*bus); });
            return Results{{"exit_us", median(std::move(samples))},
                           {"ping_us", pingUs},
                           {"kernel_us", reapToPollHup()},
                           {"relay_us", socketRelay()}};
        });
        add(14,
            "reap to the `WatchExits` reply received (allowed non-root caller) / `Peer.Ping` to "
            "the bus",
            format("%.1f us / %.1f us", r["exit_us"], r["ping_us"]) +
                format(" (floor: the kernel's reap to POLLHUP on a pidfd %.1f us, plus one "
                       "message on a Unix socket from a bare process woken by a pipe %.1f us; "
                       "medians of %.0f)",
                       r["kernel_us"], r["relay_us"], static_cast<double>(scale_.exits)),
            r["exit_us"] / r["ping_us"], 3.0, true);
    }

    // The floor of figure 14: a bare process, woken by a pipe (as nsfdd is by a
    // pidfd), sends one message of WatchExits' reply's size on a Unix socket;
    // from our write to the pipe to the message read.
    double socketRelay() {
        BareResponder responder("{\"parameters\":{\"id\":12345,\"pid\":1234,\"waitStatus\":0}}",
                                BareResponder::Mode::OnTrigger);
        VarlinkCaller socket(responder.takeSocket());
        std::vector<double> samples;
        for (int i = 0; i < scale_.exits; ++i) {
            ::usleep(2000);  // as figure 14 waits before its clock starts
            Clock::time_point sent = Clock::now();
            responder.fire();
            socket.receive();
            samples.push_back(micros(Clock::now() - sent));
        }
        return median(std::move(samples));
    }

    // The kernel's share of figure 9: from a parent's reap to another thread
    // of it seeing POLLHUP on the child's pidfd (as nsfdd's event loop would).
    double reapToPollHup() {
        std::vector<double> samples;
        for (int i = 0; i < scale_.exits; ++i) {
            test::Child child = test::Child::spawn();
            PidFd pidfd = PidFd::open(child.pid());
            UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
            struct epoll_event event {};  // no events asked: EPOLLHUP is always reported
            ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, pidfd.get(), &event);
            child.release(0);
            child.awaitExit();
            std::atomic<bool> waiting{false};
            Clock::time_point woke;
            std::thread watcher([&] {
                waiting = true;
                struct epoll_event got {};
                ::epoll_wait(epoll.get(), &got, 1, 5000);
                woke = Clock::now();
            });
            while (!waiting) {
                std::this_thread::yield();
            }
            ::usleep(200);  // let it block in epoll_wait
            Clock::time_point reaped = Clock::now();
            child.reap();
            watcher.join();
            samples.push_back(micros(woke - reaped));
        }
        return median(std::move(samples));
    }

    // Figures 10 and 15: nsfdctl against busctl making the same call
    // (GetNamespaces, all types), nsfdctl over D-Bus (10) and over Varlink (15).
    void commandLine(bool measureDbus, bool measureVarlink) {
        progress("figures 10 and 15: nsfdctl ns (D-Bus, Varlink) against busctl call");
        test::Child target = test::Child::spawn();
        std::string pid = std::to_string(target.pid());
        auto wallTime = [](const std::vector<std::string>& argv) {
            Clock::time_point start = Clock::now();
            auto [status, out] = test::run(argv);
            if (status != 0) {
                throw std::runtime_error(argv[0] + " failed: " + out);
            }
            return micros(Clock::now() - start);
        };
        ::setenv("NSFD_VARLINK_SOCKET", varlink_.c_str(), 1);
        std::vector<std::string> overBus = {NSFD_TEST_NSFDCTL, "--transport=bus", "ns", pid};
        std::vector<std::string> overVarlink = {NSFD_TEST_NSFDCTL, "--transport=varlink", "ns",
                                                pid};
        std::vector<std::string> busctl = {"busctl",
                                           "call",
                                           dbus::kBusName,
                                           dbus::kManagerPath,
                                           dbus::kManagerInterface,
                                           "GetNamespaces",
                                           "uas",
                                           pid,
                                           "0"};
        if (measureDbus) {
            auto [ctl, bus] = alternatingMedians(
                scale_.commands, [&] { return wallTime(overBus); },
                [&] { return wallTime(busctl); });
            add(10, "`nsfdctl ns PID` / `busctl call` of the same method, wall time",
                format("%.0f us / %.0f us", ctl, bus), ctl / bus, 1.0, true);
        }
        if (measureVarlink) {
            auto [ctl, bus] = alternatingMedians(
                scale_.commands, [&] { return wallTime(overVarlink); },
                [&] { return wallTime(busctl); });
            add(15, "`nsfdctl ns PID` over Varlink / `busctl call` of the same method, wall time",
                format("%.0f us / %.0f us", ctl, bus), ctl / bus, 0.5, true);
        }
        target.release(0);
        target.reap();
    }

    // Figure 18: `nsfdctl exec PID --net -- /bin/true` as a user, brokered by
    // nsfdd (Spawn: nsfdd starts a helper per run, by hand), against root's
    // direct one (setns itself), wall time of each, both through setpriv. The
    // target is in the user's own network namespace: the kernel rule allows it.
    void brokeredExec() {
        progress("figure 18: nsfdctl exec as a user (brokered) against root's (direct)");
        test::Child target = test::Child::spawn();
        std::string pid = std::to_string(target.pid());
        TestUser user = testUser();
        auto wallTime = [](const std::vector<std::string>& argv) {
            Clock::time_point start = Clock::now();
            auto [status, out] = test::run(argv);
            if (status != 0) {
                throw std::runtime_error(argv[0] + " failed: " + out);
            }
            return micros(Clock::now() - start);
        };
        ::setenv("NSFD_VARLINK_SOCKET", varlink_.c_str(), 1);
        auto as = [&](uid_t uid, gid_t gid) {
            return std::vector<std::string>{"setpriv",
                                            "--reuid=" + std::to_string(uid),
                                            "--regid=" + std::to_string(gid),
                                            "--clear-groups",
                                            NSFD_TEST_NSFDCTL,
                                            "--transport=varlink",
                                            "exec",
                                            pid,
                                            "--net",
                                            "--",
                                            "/bin/true"};
        };
        std::vector<std::string> brokered = as(user.uid, user.gid);
        std::vector<std::string> direct = as(0, 0);
        auto [viaNsfdd, byRoot] = alternatingMedians(
            scale_.commands / 2, [&] { return wallTime(brokered); },
            [&] { return wallTime(direct); });
        add(18,
            "brokered `nsfdctl exec PID --net -- /bin/true` as a user / root's direct one, "
            "wall time",
            format("%.0f us / %.0f us (the brokered run starts a helper, which forks the "
                   "command, enters the namespaces and becomes the caller)",
                   viaNsfdd, byRoot),
            viaNsfdd / byRoot, 1.5, true);
        target.release(0);
        target.reap();
    }

    // Figure 8: from execve to READY=1 with nothing to restore.
    void startup() {
        progress("figure 8: startup with nothing tracked");
        daemon_.reset();
        std::vector<double> samples;
        for (int i = 0; i < scale_.starts; ++i) {
            Daemon daemon(bus_->address(), quiet());
            samples.push_back(micros(daemon.startupTime()) / 1000);
        }
        double ms = median(samples);
        add(8, "time to READY=1 with nothing tracked",
            format("%.1f ms (median of %.0f starts)", ms, static_cast<double>(scale_.starts)), ms,
            50, true);
    }

    // Figures 5, 6 and 7: 10,000 tracked processes.
    void scale() {
        daemon_.reset();  // a fresh one (and never two on the bus)
        daemon_ = std::make_unique<Daemon>(bus_->address(), quiet());
        progress("figure 5: latency with 1 tracked");
        auto measure = [&] {
            return asUnprivileged([count = scale_.calls / 2](sdbus::IConnection& connection) {
                auto manager = managerProxy(connection);
                auto self = static_cast<uint32_t>(::getpid());
                sdbus::ObjectPath path;
                manager->callMethod("TrackProcess")
                    .onInterface(dbus::kManagerInterface)
                    .withArguments(self)
                    .storeResultsTo(path);
                auto process = sdbus::createProxy(connection, dbus::kBusName, path);
                auto byPid = [&] { getNamespace(*manager, self, "net"); };
                auto byObject = [&] {
                    sdbus::UnixFd fd;
                    process->callMethod("GetNamespace")
                        .onInterface(dbus::kProcessInterface)
                        .withArguments(std::string("net"))
                        .storeResultsTo(fd);
                };
                medianLatency(count / 10, byPid);
                medianLatency(count / 10, byObject);
                return Results{{"by_pid", medianLatency(count, byPid)},
                               {"by_object", medianLatency(count, byObject)}};
            });
        };
        Results one = measure();
        long rssBefore = rssKiB(daemon_->pid());

        progress("figures 5 and 6: tracking " + std::to_string(scale_.tracked) + " processes");
        Sleepers sleepers(scale_.tracked);
        for (std::size_t i = 0; i < sleepers.pids().size(); ++i) {
            manager_->callMethod("TrackProcess")
                .onInterface(dbus::kManagerInterface)
                .withArguments(static_cast<uint32_t>(sleepers.pids()[i]));
        }
        long rssAfter = rssKiB(daemon_->pid());
        Results many = measure();
        double perProcess = 1024.0 * static_cast<double>(rssAfter - rssBefore) / scale_.tracked;
        add(6, "nsfdd RSS growth per tracked process",
            format("%.0f KiB more for %.0f processes", static_cast<double>(rssAfter - rssBefore),
                   static_cast<double>(scale_.tracked)),
            perProcess / 1024, 1.0, true);

        progress("figure 7: restart with " + std::to_string(scale_.tracked) + " processes");
        Daemon::FdStore store = daemon_->takeFdStore();
        // The pidfds: not the state table, the trackings' accounts or the subscribers' names.
        std::size_t stored = store.size() - store.count("state") - store.count("accounts") -
                             store.count("subscribers");
        daemon_->kill9();
        daemon_ = std::make_unique<Daemon>(bus_->address(),
                                           Daemon::Options{"", std::move(store), "warn", 0, ""});
        double ms = std::chrono::duration<double, std::milli>(daemon_->startupTime()).count();
        auto tracked = managerProxy(*connection_)
                           ->getProperty("TrackedProcesses")
                           .onInterface(dbus::kManagerInterface)
                           .get<uint32_t>();
        if (tracked != stored) {
            throw std::runtime_error("restored " + std::to_string(tracked) + " of " +
                                     std::to_string(stored) + " processes");
        }
        add(7,
            "time to READY=1 with " + std::to_string(scale_.tracked) +
                " pidfds handed back (fd store)",
            format("%.0f ms for %.0f processes restored", ms, static_cast<double>(tracked)),
            ms / 1000, 0.5, true);

        // Figure 5's baseline once more, with the 10,000 untracked again: the
        // mean of before and after takes out the drift of the machine meanwhile.
        progress("figure 5: latency with 1 tracked, again");
        std::vector<sdbus::Struct<uint32_t, uint64_t, sdbus::ObjectPath>> all;
        manager_->callMethod("ListProcesses")
            .onInterface(dbus::kManagerInterface)
            .storeResultsTo(all);
        for (const auto& entry : all) {
            manager_->callMethod("UntrackProcess")
                .onInterface(dbus::kManagerInterface)
                .withArguments(entry.get<2>());
        }
        Results oneAgain = measure();
        auto baseline = [&](const char* key) { return (one[key] + oneAgain[key]) / 2; };
        double ratio = std::max(many["by_pid"] / baseline("by_pid"),
                                many["by_object"] / baseline("by_object"));
        add(5,
            "`GetNamespace` latency with " + std::to_string(scale_.tracked) +
                " tracked / with 1 (worse of Manager by pid, Process object; with 1: mean of "
                "before and after)",
            format("by pid %.1f / %.1f us", many["by_pid"], baseline("by_pid")) +
                format(", by object %.1f / %.1f us", many["by_object"], baseline("by_object")),
            ratio, 1.1, true);
        daemon_.reset();
    }

    Scale scale_;
    BusKind busKind_;
    std::unique_ptr<TestBus> bus_;
    std::unique_ptr<Daemon> daemon_;
    std::unique_ptr<sdbus::IConnection> connection_;
    std::unique_ptr<sdbus::IProxy> manager_;
    std::vector<Row> rows_;
    Results measured_;
    double floor_ = 0;
    std::string varlinkDir_;
    std::string varlink_;  // nsfdd's Varlink socket
};

}  // namespace
}  // namespace nsfd::bench

int main(int argc, char** argv) {
    nsfd::bench::Scale scale;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--quick") {
            scale = {2000, 1000, 50, 5, 20, 0.5, scale.only};
        } else if (arg == "--only" && i + 1 < argc) {
            scale.only.push_back(std::atoi(argv[++i]));
        } else {
            (void)std::fprintf(stderr, "usage: nsfd-bench [--quick] [--only FIGURE]\n");
            return 2;
        }
    }
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(0, &cpus);
    if (::geteuid() != 0 || ::sched_setaffinity(0, sizeof(cpus), &cpus) < 0) {
        (void)std::fprintf(stderr,
                           "nsfd-bench: run as root (it pins itself to CPU 0, starts a bus "
                           "and nsfdd, and calls as nsfd-test-a)\n");
        return 2;
    }
    (void)::signal(SIGPIPE, SIG_IGN);
    try {
        nsfd::bench::Suite suite(scale, nsfd::test::BusKind::DbusDaemon);
        suite.run();
        suite.print("Figures");
        // The figures the bus bounds, again on dbus-broker (if installed).
        if (nsfd::test::TestBus::brokerInstalled()) {
            nsfd::bench::Scale onBroker = scale;
            if (onBroker.only.empty()) {
                onBroker.only = {1, 2, 4, 9, 13};
            }
            nsfd::bench::Suite broker(onBroker, nsfd::test::BusKind::DbusBroker);
            broker.run();
            broker.print(
                "Figures on dbus-broker (1, 2, 4, 9, 13: those the bus bounds; 11 and 12 come "
                "with 1)");
        } else {
            std::printf(
                "## Figures on dbus-broker\n\nNot measured: dbus-broker-launch is not "
                "installed (`apt-get install dbus-broker`).\n\n");
        }
    } catch (const std::exception& e) {
        (void)std::fprintf(stderr, "nsfd-bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
