// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd asks polkit when neither the kernel rule nor nsfdd.conf allows a call:
// a real polkitd (Debian's) on the tests' bus, with the test's rules only,
// callers as real users. Also: polkitd stopped while a call waits on it, and
// polkitd absent.
#include <grp.h>
#include <poll.h>
#include <pty.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>

#include <systemd/sd-bus.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "fake_container.hpp"
#include "fixture.hpp"
#include "polkit_harness.hpp"

namespace nsfd::test {
namespace {

using Clock = std::chrono::steady_clock;

// nsfdd with no grants and a short polkit timeout.
constexpr const char* kPolkitConfig = R"(
[polkit]
timeout-ms = 3000
)";

// nsfd-test-a may get net namespaces of any process, send signal 0 to
// processes of `other`, and read info only after authentication.
std::string rulesFor(uid_t other) {
    return R"(polkit.addRule(function(action, subject) {
    if (subject.user != "nsfd-test-a") { return polkit.Result.NOT_HANDLED; }
    if (action.id == "org.nsfd1.get-namespace" && action.lookup("namespace") == "net") {
        return polkit.Result.YES;
    }
    if (action.id == "org.nsfd1.send-signal" && action.lookup("uid") == ")" +
           std::to_string(other) + R"(" && action.lookup("signal") == "0") {
        return polkit.Result.YES;
    }
    if (action.id == "org.nsfd1.read-info") { return polkit.Result.AUTH_ADMIN; }
    return polkit.Result.NOT_HANDLED;
});
)";
}

// openssl passwd -6 -salt nsfdtest nsfd-test-password
constexpr const char* kRootPassword = "nsfd-test-password";
constexpr const char* kRootPasswordHash =
    "$6$nsfdtest$capQHND2Tpa/JIt9.pMt1OdvcDkVipgP1K2hj/"
    "T.AXe0FtzUEvKUA5EwVZqNUEaS6tdlTp9mEor0LTDzI5IWg/";

class PolkitDaemonTest : public DaemonTest {
  protected:
    std::string config() const override { return kPolkitConfig; }
    std::string varlinkPath() const override { return dir_.socket(); }

    void SetUp() override {
        if (!TestPolkit::installed()) {
            GTEST_SKIP() << "polkitd is not installed (apt-get install polkitd)";
        }
        if (kUser == 0 || kOtherUser == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test-users)";
        }
        DaemonTest::SetUp();
    }

    void TearDown() override {
        polkit_.reset();
        DaemonTest::TearDown();
    }

    // One Manager call as `uid`: "ok" or the D-Bus error name.
    std::string as(uid_t uid, const std::function<void(ManagerProxy&)>& call) {
        return asUser(uid, uid, {}, [&](sdbus::IConnection& bus) {
            ManagerProxy manager(bus, false);
            std::string error = errorNameOf([&] { call(manager); });
            return error.empty() ? std::string("ok") : error;
        });
    }

    SocketDir dir_;
    std::unique_ptr<TestPolkit> polkit_;
};

// nsfdctl as `uid` over nsfdd's Varlink socket, its output on a pty or a pipe.
constexpr const char* kNoAgent = "no pkttyagent";

struct Nsfdctl {
    pid_t pid = -1;
    UniqueFd output;  // the pty's master, or the pipe's read end

    // `shadow`: if set, bound over /etc/shadow in a mount namespace of nsfdctl's
    // own (polkit's setuid helper, its grandchild, reads it there); kNoAgent:
    // pkttyagent hidden there instead.
    Nsfdctl(uid_t uid, const std::string& socket, std::vector<std::string> args, bool onATerminal,
            const std::string& shadow = "") {
        std::vector<std::string> argv = {NSFD_TEST_NSFDCTL};
        argv.insert(argv.end(), args.begin(), args.end());
        int fds[2] = {-1, -1};
        if (onATerminal) {
            int master = -1;
            pid = ::forkpty(&master, nullptr, nullptr, nullptr);
            output = UniqueFd(master);
        } else {
            if (::pipe2(fds, O_CLOEXEC) < 0) {
                throw std::system_error(errno, std::system_category(), "pipe2");
            }
            pid = ::fork();
            output = UniqueFd(fds[0]);
        }
        if (pid < 0) {
            throw std::system_error(errno, std::system_category(), "fork");
        }
        if (pid == 0) {
            if (!onATerminal) {
                ::dup2(fds[1], STDIN_FILENO);  // not a terminal
                ::dup2(fds[1], STDOUT_FILENO);
                ::dup2(fds[1], STDERR_FILENO);
            }
            ::setenv("NSFD_VARLINK_SOCKET", socket.c_str(), 1);
            if (shadow == kNoAgent ? !hideTheAgent() : !shadow.empty() && !seeTestMachine(shadow)) {
                ::_exit(125);
            }
            if (::setgroups(0, nullptr) < 0 || ::setresgid(uid, uid, uid) < 0 ||
                ::setresuid(uid, uid, uid) < 0) {
                ::_exit(126);
            }
            std::vector<char*> raw;
            raw.reserve(argv.size() + 1);
            for (std::string& arg : argv) {
                raw.push_back(arg.data());
            }
            raw.push_back(nullptr);
            ::execv(raw[0], raw.data());
            ::_exit(127);
        }
        if (fds[1] >= 0) {
            ::close(fds[1]);
        }
    }
    Nsfdctl(const Nsfdctl&) = delete;
    Nsfdctl& operator=(const Nsfdctl&) = delete;
    ~Nsfdctl() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    }

    // In a mount namespace of the child's own: `shadow` over /etc/shadow, and
    // the test bus at the system bus's default path, for polkit's setuid
    // helper (setuid, it ignores DBUS_SYSTEM_BUS_ADDRESS).
    // A machine without pkttyagent: /dev/null (not executable) over it, in a
    // mount namespace of the child's own.
    static bool hideTheAgent() {
        return ::unshare(CLONE_NEWNS) == 0 &&
               ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
               ::mount("/dev/null", "/usr/bin/pkttyagent", nullptr, MS_BIND, nullptr) == 0;
    }

    static bool seeTestMachine(const std::string& shadow) {
        const std::string& address = busAddress();
        std::string bus = address.substr(address.find("path=") + 5);
        bus = bus.substr(0, bus.find(','));
        return ::unshare(CLONE_NEWNS) == 0 &&
               ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
               ::mount(shadow.c_str(), "/etc/shadow", nullptr, MS_BIND, nullptr) == 0 &&
               ::mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") == 0 &&
               ::mkdir("/run/dbus", 0755) == 0 &&
               UniqueFd(::open("/run/dbus/system_bus_socket", O_CREAT | O_WRONLY | O_CLOEXEC, 0666))
                   .ok() &&
               ::mount(bus.c_str(), "/run/dbus/system_bus_socket", nullptr, MS_BIND, nullptr) == 0;
    }

    // Reads until `text` has come (true) or the output ends or 20 s pass.
    bool readUntil(const std::string& text, std::string& got) {
        auto deadline = Clock::now() + std::chrono::seconds(20);
        while (got.find(text) == std::string::npos && Clock::now() < deadline) {
            pollfd p{output.get(), POLLIN, 0};
            if (::poll(&p, 1, 200) <= 0) {
                continue;
            }
            char buffer[512];
            ssize_t n = ::read(output.get(), buffer, sizeof(buffer));
            if (n <= 0) {
                break;  // EIO from a pty master once the child side is gone
            }
            got.append(buffer, static_cast<std::size_t>(n));
        }
        return got.find(text) != std::string::npos;
    }

    // Types `line` at the password prompt, once the agent reads it: echo off
    // (it turns echo off with TCSAFLUSH, which drops what came before).
    bool typePassword(const std::string& line) {
        auto deadline = Clock::now() + std::chrono::seconds(10);
        termios mode{};
        while (::tcgetattr(output.get(), &mode) == 0 && (mode.c_lflag & ECHO) != 0 &&
               Clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        std::string typed = line + "\n";
        return (mode.c_lflag & ECHO) == 0 && ::write(output.get(), typed.data(), typed.size()) ==
                                                 static_cast<ssize_t>(typed.size());
    }

    int wait() {
        int status = 0;
        ::waitpid(pid, &status, 0);
        pid = -1;
        return status;
    }
};

TEST_F(PolkitDaemonTest, ARuleDecidesOnTheNamespaceTheTargetsUidAndTheSignal) {
    polkit_ = std::make_unique<TestPolkit>(busAddress(), rulesFor(kOtherUser));
    Child roots = Child::spawn();
    Child others = spawnAs(kOtherUser);
    auto root = static_cast<uint32_t>(roots.pid());
    auto other = static_cast<uint32_t>(others.pid());

    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespace(root, "net"); }), "ok");
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespace(root, "uts"); }), err::kAccessDenied);
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespaces(root, {"net"}); }), "ok");
    EXPECT_EQ(as(kUser,
                 [&](ManagerProxy& m) {
                     m.GetNamespaces(root, {"net", "uts"});
                 }),
              err::kAccessDenied)
        << "each type asked for is one check";
    EXPECT_EQ(as(kOtherUser, [&](ManagerProxy& m) { m.GetNamespace(root, "net"); }),
              err::kAccessDenied);
    EXPECT_NE(daemon_->log().find("decided by: polkit"), std::string::npos) << daemon_->log();

    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.SendSignal(other, 0); }), "ok");
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.SendSignal(other, SIGKILL); }),
              err::kAccessDenied);
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.SendSignal(root, 0); }), err::kAccessDenied);
    for (Child* child : {&roots, &others}) {
        child->release(0);
        child->reap();
    }
}

TEST_F(PolkitDaemonTest, ARuleDecidesOpenSocketOnTheFamilyAndTypeByName) {
    polkit_ =
        std::make_unique<TestPolkit>(busAddress(), R"(polkit.addRule(function(action, subject) {
    if (subject.user == "nsfd-test-a" && action.id == "org.nsfd1.open-socket" &&
        action.lookup("family") == "inet" && action.lookup("type") == "stream" &&
        action.lookup("protocol") == "0") {
        return polkit.Result.YES;
    }
    return polkit.Result.NOT_HANDLED;
});
)");
    Child roots = Child::spawn({}, Child::Options{CLONE_NEWNET, 0});
    auto root = static_cast<uint32_t>(roots.pid());
    auto open = [&](uid_t uid, int family, int type) {
        return as(uid, [&](ManagerProxy& m) {
            sdbus::UnixFd socket = m.OpenSocket(root, family, type, 0);
            // Made in the target's network namespace, as nsfd-test-a.
            UniqueFd own(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            std::uint64_t got = 0, here = 0;
            socklen_t length = sizeof(got);
            ::getsockopt(socket.get(), SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &got, &length);
            ::getsockopt(own.get(), SOL_SOCKET, 71, &here, &length);
            struct stat st {};
            if (got == 0 || got == here || ::fstat(socket.get(), &st) < 0 || st.st_uid != kUser) {
                throw sdbus::Error("test.WrongSocket", "not the target's namespace or owner");
            }
        });
    };
    EXPECT_EQ(open(kUser, AF_INET, SOCK_STREAM), "ok");
    EXPECT_EQ(open(kUser, AF_INET, SOCK_DGRAM), err::kAccessDenied);
    EXPECT_EQ(open(kUser, AF_NETLINK, SOCK_RAW), err::kAccessDenied);
    EXPECT_EQ(open(kOtherUser, AF_INET, SOCK_STREAM), err::kAccessDenied);
    EXPECT_NE(daemon_->log().find("decided by: polkit"), std::string::npos) << daemon_->log();
    roots.release(0);
    roots.reap();
}

// Spawn (nsfdctl exec as a user): a rule allows one command by its argv[0]
// and the namespace types, and nothing else runs.
TEST_F(PolkitDaemonTest, ARuleDecidesEnterOnTheCommand) {
    polkit_ =
        std::make_unique<TestPolkit>(busAddress(), R"(polkit.addRule(function(action, subject) {
    if (subject.user == "nsfd-test-a" && action.id == "org.nsfd1.enter" &&
        action.lookup("command") == "hostname" && action.lookup("namespaces") == "net uts" &&
        action.lookup("uid") == "0") {
        return polkit.Result.YES;
    }
    return polkit.Result.NOT_HANDLED;
});
)");
    Child target = Child::spawn([] { return ::sethostname("polkit-target", 13) < 0 ? errno : 0; },
                                Child::Options{CLONE_NEWNET | CLONE_NEWUTS, 0});
    ::setenv("NSFD_VARLINK_SOCKET", dir_.socket().c_str(), 1);
    auto exec = [&](uid_t uid, const std::string& command) {
        auto [status, out] =
            run({"setpriv", "--reuid=" + std::to_string(uid), "--regid=" + std::to_string(uid),
                 "--clear-groups", NSFD_TEST_NSFDCTL, "--no-ask-password", "exec",
                 std::to_string(target.pid()), "--net", "--uts", "--", command});
        return std::pair{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
    };
    EXPECT_EQ(exec(kUser, "hostname"), (std::pair<int, std::string>{0, "polkit-target\n"}));
    EXPECT_EQ(exec(kUser, "uname"), (std::pair<int, std::string>{4, ""}));
    EXPECT_EQ(exec(kOtherUser, "hostname"), (std::pair<int, std::string>{4, ""}));
    ::setenv("NSFD_VARLINK_SOCKET", kNoVarlinkSocket, 1);
    EXPECT_NE(daemon_->log().find("decided by: polkit"), std::string::npos) << daemon_->log();
    target.release(0);
    target.reap();
}

TEST_F(PolkitDaemonTest, AChallengeWithoutTheInteractiveFlagIsInteractiveAuthorizationRequired) {
    polkit_ = std::make_unique<TestPolkit>(busAddress(), rulesFor(kOtherUser));
    Child roots = Child::spawn();
    auto root = static_cast<uint32_t>(roots.pid());
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetProcessInfo(root); }),
              err::kInteractiveAuthorizationRequired);

    // With the flag and no authentication agent: a plain, named denial.
    auto [status, out] = forkAndRead([&](int fd) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
        if (::setresgid(kUser, kUser, kUser) < 0 || ::setresuid(kUser, kUser, kUser) < 0) {
            ::_exit(127);
        }
        ::execlp("busctl", "busctl", "--allow-interactive-authorization=yes", "call", "org.nsfd1",
                 "/org/nsfd1", "org.nsfd1.Manager", "GetProcessInfo", "u",
                 std::to_string(root).c_str(), nullptr);
        ::_exit(127);
    });
    EXPECT_NE(status, 0);
    EXPECT_NE(out.find("Access denied"), std::string::npos) << out;
    roots.release(0);
    roots.reap();
}

// Naming a container needs GetProcessInfo's right, which polkit may give; a
// caller it does not give it to (even one it would ask for a password) is told
// "no such process", as for a container that is not there.
TEST_F(PolkitDaemonTest, PolkitsReadInfoDecidesWhoMayNameAContainer) {
    if (cgroup2Root().empty()) {
        GTEST_SKIP() << "no cgroup2 hierarchy mounted";
    }
    polkit_ =
        std::make_unique<TestPolkit>(busAddress(), R"(polkit.addRule(function(action, subject) {
    if (subject.user == "nsfd-test-b" && (action.id == "org.nsfd1.read-info" ||
        (action.id == "org.nsfd1.get-namespace" && action.lookup("namespace") == "net"))) {
        return polkit.Result.YES;
    }
    if (subject.user == "nsfd-test-a" && action.id == "org.nsfd1.get-namespace") {
        return polkit.Result.YES;
    }
    if (subject.user == "nsfd-test-a" && action.id == "org.nsfd1.read-info") {
        return polkit.Result.AUTH_ADMIN;
    }
    return polkit.Result.NOT_HANDLED;
});
)");
    std::string id = makeContainerId();
    FakeContainer container("/nsfd-polkit-" + std::to_string(::getpid()) + "/docker/" + id, "pk");
    std::string selector = "container:" + id.substr(0, 12);
    ino_t expected = statOf(nsPath(container.pid(), "net")).st_ino;
    EXPECT_EQ(as(kOtherUser,
                 [&](ManagerProxy& m) {
                     auto fds = m.GetNamespacesBySelector(selector, {"net"});
                     struct stat st {};
                     if (::fstat(fds.at("net").get(), &st) < 0 || st.st_ino != expected) {
                         throw sdbus::Error("test.WrongNamespace", "not the container's");
                     }
                 }),
              "ok");
    EXPECT_EQ(
        as(kOtherUser, [&](ManagerProxy& m) { m.GetNamespacesBySelector(selector, {"uts"}); }),
        err::kAccessDenied)
        << "seen, then the method's own check";
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespacesBySelector(selector, {"net"}); }),
              err::kNoSuchProcess);
    EXPECT_EQ(as(kUser,
                 [&](ManagerProxy& m) {
                     m.GetNamespacesBySelector("container:" + makeContainerId(), {"net"});
                 }),
              err::kNoSuchProcess);
}

TEST_F(PolkitDaemonTest, WithoutARuleTheActionsDefaultsDecide) {
    polkit_ = std::make_unique<TestPolkit>(busAddress(), "");
    Child roots = Child::spawn();
    auto root = static_cast<uint32_t>(roots.pid());
    // No session here: allow_any (no) applies.
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespace(root, "net"); }), err::kAccessDenied);
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetProcessInfo(root); }), err::kAccessDenied);
    roots.release(0);
    roots.reap();
}

TEST_F(PolkitDaemonTest, WhilePolkitdHangsOthersAreServedAndTheWaitingCallEndsAtTheTimeout) {
    polkit_ = std::make_unique<TestPolkit>(busAddress(), rulesFor(kOtherUser));
    Child roots = Child::spawn();
    Child own = spawnAs(kUser);
    auto root = static_cast<uint32_t>(roots.pid());
    polkit_->pause();

    Clock::time_point start = Clock::now();
    std::string waiting;
    Clock::duration waited{};
    std::thread caller([&] {
        waiting = as(kUser, [&](ManagerProxy& m) { m.GetNamespace(root, "net"); });
        waited = Clock::now() - start;
    });
    // Let the call reach polkit, then see that nsfdd serves root and the kernel rule.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Clock::time_point others = Clock::now();
    sdbus::UnixFd fd = manager_->GetNamespace(root, "uts");
    EXPECT_TRUE(fd.isValid());
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespace(own.pid(), "net"); }), "ok");
    Clock::duration servedIn = Clock::now() - others;
    caller.join();
    polkit_->resume();

    EXPECT_EQ(waiting, err::kAccessDenied);
    EXPECT_LT(servedIn, std::chrono::milliseconds(2500)) << "served while polkit hung";
    EXPECT_GE(waited, std::chrono::milliseconds(2900)) << "denied only at nsfdd's timeout (3 s)";
    EXPECT_NE(daemon_->log().find("did not answer"), std::string::npos) << daemon_->log();
    for (Child* child : {&roots, &own}) {
        child->release(0);
        child->reap();
    }
}

TEST_F(PolkitDaemonTest, WithoutPolkitdTheAnswerIsTodaysDenialWithNoDelay) {
    Child roots = Child::spawn();
    auto root = static_cast<uint32_t>(roots.pid());
    Clock::time_point start = Clock::now();
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespace(root, "net"); }), err::kAccessDenied);
    // Well under the 3 s polkit timeout: nothing waited for polkitd.
    EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(1500));
    EXPECT_NE(daemon_->log().find("polkitd is not running"), std::string::npos) << daemon_->log();
    roots.release(0);
    roots.reap();
}

// The CheckAuthorization calls on the bus, as a monitor sees them
// (org.freedesktop.DBus.Monitoring.BecomeMonitor, as `busctl monitor`): each
// subject's kind, pid and start time, as polkitd receives them.
class PolkitSubjectMonitor {
  public:
    struct Subject {
        std::string kind;
        std::uint32_t pid = 0;
        std::optional<std::uint64_t> startTime;
    };

    explicit PolkitSubjectMonitor(const std::string& address) {
        sd_bus* bus = nullptr;
        check(sd_bus_new(&bus), "sd_bus_new");
        bus_ = bus;
        check(sd_bus_set_address(bus, address.c_str()), "sd_bus_set_address");
        check(sd_bus_set_monitor(bus, 1), "sd_bus_set_monitor");
        check(sd_bus_set_bus_client(bus, 1), "sd_bus_set_bus_client");
        check(sd_bus_start(bus), "sd_bus_start");
        sd_bus_message* call = nullptr;
        check(sd_bus_message_new_method_call(bus, &call, "org.freedesktop.DBus",
                                             "/org/freedesktop/DBus",
                                             "org.freedesktop.DBus.Monitoring", "BecomeMonitor"),
              "BecomeMonitor");
        int r = sd_bus_message_append(call, "asu", 1,
                                      "type='method_call',interface='org.freedesktop.PolicyKit1."
                                      "Authority',member='CheckAuthorization'",
                                      0U);
        if (r >= 0) {
            r = sd_bus_call(bus, call, 0, nullptr, nullptr);
        }
        sd_bus_message_unref(call);
        check(r, "BecomeMonitor");
        thread_ = std::thread([this] { run(); });
    }
    ~PolkitSubjectMonitor() {
        stop_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
        sd_bus_flush_close_unref(bus_);
    }
    PolkitSubjectMonitor(const PolkitSubjectMonitor&) = delete;
    PolkitSubjectMonitor& operator=(const PolkitSubjectMonitor&) = delete;

    std::vector<Subject> subjects() {
        std::lock_guard<std::mutex> lock(mutex_);
        return subjects_;
    }

  private:
    static void check(int r, const char* what) {
        if (r < 0) {
            throw std::system_error(-r, std::generic_category(), what);
        }
    }

    void run() {
        while (!stop_) {
            sd_bus_message* m = nullptr;
            int r = sd_bus_process(bus_, &m);
            if (r < 0) {
                return;
            }
            if (m != nullptr) {
                if (sd_bus_message_is_method_call(m, "org.freedesktop.PolicyKit1.Authority",
                                                  "CheckAuthorization") > 0) {
                    Subject subject = read(m);
                    std::lock_guard<std::mutex> lock(mutex_);
                    subjects_.push_back(subject);
                }
                sd_bus_message_unref(m);
            }
            if (r == 0) {
                sd_bus_wait(bus_, 50'000);
            }
        }
    }

    static Subject read(sd_bus_message* m) {
        Subject subject;
        const char* kind = nullptr;
        if (sd_bus_message_enter_container(m, 'r', "sa{sv}") < 0 ||
            sd_bus_message_read(m, "s", &kind) < 0 ||
            sd_bus_message_enter_container(m, 'a', "{sv}") < 0) {
            return subject;
        }
        subject.kind = kind;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
            const char* key = nullptr;
            sd_bus_message_read(m, "s", &key);
            std::string name = key != nullptr ? key : "";
            if (name == "pid") {
                sd_bus_message_read(m, "v", "u", &subject.pid);
            } else if (name == "start-time") {
                std::uint64_t startTime = 0;
                sd_bus_message_read(m, "v", "t", &startTime);
                subject.startTime = startTime;
            } else {
                sd_bus_message_skip(m, "v");
            }
            sd_bus_message_exit_container(m);
        }
        return subject;
    }

    sd_bus* bus_ = nullptr;
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::vector<Subject> subjects_;
    std::thread thread_;
};

// CVE-2013-4288's race, on a connection: the process that made it exits, a
// root process takes its pid, and its child goes on calling. polkit is asked
// only about a process nsfdd holds a pidfd of, with its start time, and never
// once that process has exited: the second call is a named denial.
TEST_F(PolkitDaemonTest, PolkitIsNeverAskedAboutAPidTheCallerNoLongerHas) {
    // Root's processes (whose pid the caller's will be) get anything from polkit.
    polkit_ =
        std::make_unique<TestPolkit>(busAddress(), R"(polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.nsfd1.") != 0) { return polkit.Result.NOT_HANDLED; }
    return subject.user == "root" ? polkit.Result.YES : polkit.Result.NO;
});
)");
    PolkitSubjectMonitor monitor(busAddress());
    Child roots = Child::spawn();
    auto [status, out] =
        // NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one path, joined on purpose
        run({"/usr/bin/python3", NSFD_TEST_SOURCE_DIR "/tests/integration/dbus_handoff.py", "reuse",
             busAddress(), std::to_string(kUser), std::to_string(roots.pid())});
    EXPECT_EQ(status, 0) << out;
    std::istringstream lines(out);
    std::map<std::string, std::string> said;
    for (std::string line; std::getline(lines, line);) {
        said[line.substr(0, line.find(':'))] = line.substr(line.find(':') + 2);
    }
    EXPECT_EQ(said["first"], err::kAccessDenied) << out;
    if (said["reused"] != "yes") {
        GTEST_SKIP() << "the caller's pid could not be given to a root process: " << out;
    }
    EXPECT_EQ(said["second"].substr(0, said["second"].find(':')), err::kAccessDenied) << out;
    EXPECT_NE(said["second"].find("has exited and its pid may name another process"),
              std::string::npos)
        << out;
    // polkitd heard of the first call only, about a process by its start time.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::vector<PolkitSubjectMonitor::Subject> subjects = monitor.subjects();
    ASSERT_EQ(subjects.size(), 1U) << out;
    EXPECT_EQ(subjects[0].kind, "unix-process");
    ASSERT_TRUE(subjects[0].startTime.has_value());
    EXPECT_NE(*subjects[0].startTime, 0U);
    EXPECT_NE(subjects[0].pid, 0U);
    roots.release(0);
    roots.reap();
}

// As systemctl: on a terminal nsfdctl answers polkit's challenge by starting
// pkttyagent for itself and calling again with allowInteractiveAuthentication,
// and polkit asks for the password there. Off the terminal, or with
// --no-ask-password, the challenge is a named error.
TEST_F(PolkitDaemonTest, NsfdctlOnATerminalLetsPolkitAskForThePassword) {
    polkit_ = std::make_unique<TestPolkit>(busAddress(), rulesFor(kOtherUser));
    Child roots = Child::spawn();
    std::string root = std::to_string(roots.pid());
    std::string got;

    Nsfdctl piped(kUser, dir_.socket(), {"info", root}, false);
    piped.readUntil("\n", got);
    EXPECT_EQ(WEXITSTATUS(piped.wait()), 4) << got;
    EXPECT_NE(got.find("on a terminal"), std::string::npos) << got;

    got.clear();
    Nsfdctl refused(kUser, dir_.socket(), {"--no-ask-password", "info", root}, true);
    refused.readUntil("\n", got);
    EXPECT_EQ(WEXITSTATUS(refused.wait()), 4) << got;
    EXPECT_NE(got.find("without --no-ask-password"), std::string::npos) << got;

    got.clear();
    Nsfdctl noAgent(kUser, dir_.socket(), {"info", root}, true, kNoAgent);
    noAgent.readUntil("until the output ends", got);
    EXPECT_EQ(WEXITSTATUS(noAgent.wait()), 4) << got;
    EXPECT_NE(got.find("could not start /usr/bin/pkttyagent"), std::string::npos) << got;

    got.clear();
    Nsfdctl asked(kUser, dir_.socket(), {"info", root}, true);
    // AUTH_ADMIN: the administrator's password (root's: the test's polkitd
    // has no rule naming administrators).
    ASSERT_TRUE(asked.readUntil("Password:", got)) << got << "\n---- polkitd ----\n"
                                                   << polkit_->log();
    EXPECT_NE(got.find("org.nsfd1.read-info"), std::string::npos) << got;
    // A wrong password: PAM says no (after its delay), so does polkit, and nsfdd.
    ASSERT_TRUE(asked.typePassword("wrong"));
    asked.readUntil("until the output ends", got);
    EXPECT_EQ(WEXITSTATUS(asked.wait()), 4) << got;
    EXPECT_NE(got.find("nsfdctl: Access denied"), std::string::npos) << got;

    // The right password: polkit allows it, nsfdctl's second call succeeds.
    // Root's password is one of the test's, in a shadow file of its own.
    std::string shadow = dir_.path() + "/shadow";
    {
        std::ifstream in("/etc/shadow");
        std::ofstream out(shadow);
        std::string line;
        while (std::getline(in, line)) {
            out << (line.rfind("root:", 0) == 0
                        ? std::string("root:") + kRootPasswordHash + line.substr(line.find(':', 5))
                        : line)
                << '\n';
        }
    }
    got.clear();
    Nsfdctl allowed(kUser, dir_.socket(), {"--json", "info", root}, true, shadow);
    ASSERT_TRUE(allowed.readUntil("Password:", got)) << got;
    ASSERT_TRUE(allowed.typePassword(kRootPassword));
    allowed.readUntil("until the output ends", got);
    EXPECT_EQ(WEXITSTATUS(allowed.wait()), 0) << got;
    // The JSON is the line the terminal showed after the password.
    std::size_t start = got.find('{', got.find("AUTHENTICATION COMPLETE"));
    ASSERT_NE(start, std::string::npos) << got;
    std::string line = got.substr(start, got.find_first_of("\r\n", start) - start);
    EXPECT_EQ(nlohmann::json::parse(line).at("pid"), std::stoi(root)) << got;
    ::unlink(shadow.c_str());
    roots.release(0);
    roots.reap();
}

}  // namespace
}  // namespace nsfd::test
