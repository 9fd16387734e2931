// SPDX-License-Identifier: LGPL-2.1-or-later
// Interop and honest messages (issue 26): fds tied to Varlink messages as
// sd-varlink ties them, written by hand on a raw socket; a caller that runs out
// of fds told so, on both transports.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "fixture.hpp"
#include "varlink/codec.hpp"
#include "varlink/socket_io.hpp"
#include "varlink_connection.hpp"

namespace nsfd::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

UniqueFd connectTo(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    if (!fd.ok() || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
        throw std::system_error(errno, std::generic_category(), "connect to " + path);
    }
    return fd;
}

std::string call(std::string_view method, const json& parameters, bool oneway = false) {
    return varlink::encodeCall(std::string("org.nsfd1.Manager.") + std::string(method), parameters,
                               false, oneway);
}

// The next `count` replies on `socket`, decoded as libnsfd-client decodes them;
// fewer if nsfdd hangs up or 10 s pass.
std::vector<varlink::ReplyMessage> readReplies(int socket, std::size_t count) {
    varlink::ReplyDecoder decoder;
    std::vector<varlink::ReplyMessage> out;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (out.size() < count) {
        while (std::optional<varlink::DecodedReply> decoded = decoder.next()) {
            auto* reply = std::get_if<varlink::ReplyMessage>(&*decoded);
            if (reply == nullptr) {
                ADD_FAILURE() << "not a reply: "
                              << varlink::toString(std::get<varlink::DecodeError>(*decoded));
                return out;
            }
            out.push_back(std::move(*reply));
        }
        if (out.size() >= count) {
            break;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        struct pollfd pfd = {socket, POLLIN, 0};
        if (left <= 0ms || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
            return out;
        }
        char buffer[65536];
        varlink::Received received;
        int r = varlink::receiveWithFds(socket, buffer, received);
        if (r == -EAGAIN || r == -EINTR) {
            continue;
        }
        if (r < 0 || received.bytes == 0) {
            return out;
        }
        decoder.feed(std::string_view(buffer, received.bytes), std::move(received.fds),
                     received.fdsNotReceived);
    }
    return out;
}

class InteropTest : public DaemonTest {
  protected:
    std::string varlinkPath() const override { return socket_; }

    void SetUp() override {
        if (kUser == 0) {
            GTEST_SKIP() << "user nsfd-test-a is missing (scripts/test-users)";
        }
        dir_.emplace();
        socket_ = dir_->socket();
        DaemonTest::SetUp();
    }
    void TearDown() override {
        DaemonTest::TearDown();
        dir_.reset();
    }

    void expectFdsSettle(int count) {
        for (int i = 0; i < 200 && daemon_->openFdCount() > count; ++i) {
            std::this_thread::sleep_for(10ms);
        }
        EXPECT_LE(daemon_->openFdCount(), count);
    }

    std::optional<SocketDir> dir_;
    std::string socket_;
};

// What sd-varlink's clients write (varlinkctl --push-fd): a call with its fd,
// then a plain call, in one write with the fd attached.
TEST_F(InteropTest, VarlinkCallWithFdThenPlainCallInOneWrite) {
    Child target = spawnAs(kUser);
    PidFd pidfd = PidFd::open(target.pid());
    UniqueFd socket = connectTo(socket_);
    ASSERT_TRUE(sendAllWithFds(
        socket.get(), call("TrackProcess", {{"pidfd", 0}}) + call("GetServiceInfo", json::object()),
        {pidfd.get()}));
    std::vector<varlink::ReplyMessage> replies = readReplies(socket.get(), 2);
    ASSERT_EQ(replies.size(), 2u);
    ASSERT_FALSE(replies[0].error) << *replies[0].error << " " << replies[0].parameters.dump();
    EXPECT_EQ(replies[0].parameters.at("id").get<std::uint64_t>(), pidfd.id());
    ASSERT_FALSE(replies[1].error) << *replies[1].error;
    EXPECT_EQ(replies[1].parameters.at("trackedProcesses").get<int>(), 1);
    target.release(0);
    target.reap();
}

// A oneway call with its fd and a plain call in one write: the oneway call is
// done (nothing answers it, so only its effect shows).
TEST_F(InteropTest, VarlinkOnewaySendSignalWithFdThenPlainCallInOneWrite) {
    Child target = spawnAs(kUser);
    PidFd pidfd = PidFd::open(target.pid());
    UniqueFd socket = connectTo(socket_);
    ASSERT_TRUE(sendAllWithFds(socket.get(),
                               call("SendSignal", {{"pidfd", 0}, {"signal", SIGKILL}}, true) +
                                   call("GetServiceInfo", json::object()),
                               {pidfd.get()}));
    std::vector<varlink::ReplyMessage> replies = readReplies(socket.get(), 1);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_FALSE(replies[0].error);
    EXPECT_TRUE(replies[0].parameters.contains("version"));
    int status = target.reap();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "wait status " << status;
}

// systemd#43823: a oneway call without fds and a call with one, glued into one
// read. sd-varlink gives the fd to the first message; so does nsfdd: the second
// call is told its fd is missing, the fd closed, the connection served on.
TEST_F(InteropTest, VarlinkFdsGlueToTheMessageThatStartsTheRead) {
    Child target = spawnAs(kUser);
    PidFd pidfd = PidFd::open(target.pid());
    int before = daemon_->openFdCount();
    UniqueFd socket = connectTo(socket_);
    ASSERT_TRUE(sendAllWithFds(
        socket.get(),
        call("GetServiceInfo", json::object(), true) + call("GetProcessInfo", {{"pidfd", 0}}),
        {pidfd.get()}));
    std::vector<varlink::ReplyMessage> replies = readReplies(socket.get(), 1);
    ASSERT_EQ(replies.size(), 1u);
    ASSERT_TRUE(replies[0].error) << replies[0].parameters.dump();
    EXPECT_EQ(*replies[0].error, "org.nsfd1.Manager.InvalidArgument");
    EXPECT_EQ(replies[0].parameters.value("parameter", ""), "pidfd");
    // Served on.
    ASSERT_TRUE(sendAllWithFds(socket.get(), call("GetServiceInfo", json::object())));
    replies = readReplies(socket.get(), 1);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_FALSE(replies[0].error);
    socket.reset();
    expectFdsSettle(before);
    target.release(0);
    target.reap();
}

// systemd's own client, where the machine has one that can push fds.
TEST_F(InteropTest, VarlinkctlPushFdWhereInstalled) {
    auto [status, help] = run({"sh", "-c", "varlinkctl --help 2>&1"});
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        help.find("--push-fd") == std::string::npos) {
        GTEST_SKIP() << "no varlinkctl with --push-fd here (systemd 258+; Debian 12 has 252)";
    }
    Child target = spawnAs(kUser);
    std::string pid = std::to_string(target.pid());
    auto [code, out] = run({"sh", "-c",
                            "varlinkctl --push-fd=/proc/" + pid + " call " + socket_ +
                                " org.nsfd1.Manager.GetProcessInfo '{\"pidfd\": 0}' 2>&1"});
    // /proc/PID is not a pidfd (a shell cannot open one): "is not a pidfd"
    // shows the fd came with the call, where a lost one says "No fd 0 came".
    EXPECT_NE(code, 0);
    EXPECT_NE(out.find("is not a pidfd"), std::string::npos) << out;
    target.release(0);
    target.reap();
}

}  // namespace
}  // namespace nsfd::test

namespace nsfd::test {
namespace {

// nsfdctl under `ulimit -n limit`, on `transport`, as root: {exit code, stdout and stderr}.
std::pair<int, std::string> nsfdctlWithLimit(int limit, const std::string& transport,
                                             const std::string& socket,
                                             const std::vector<std::string>& args) {
    // stderr joined first: dash saves an fd it redirects above 10, beyond the limit.
    std::string command = "exec 2>&1; ulimit -n " + std::to_string(limit) +
                          " && NSFD_VARLINK_SOCKET='" + socket +
                          "' exec " NSFD_TEST_NSFDCTL " --transport=" + transport;
    for (const std::string& arg : args) {
        command += " " + arg;
    }
    auto [status, out] = run({"sh", "-c", command});
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A caller with few fds cannot take the fds it asked for: nsfdctl says it ran
// out of fds, with its limit (exit 1), never that nsfdd is away (3) or that
// the arguments were bad (2); nsfdd keeps nothing of it.
TEST_F(InteropTest, ACallerOutOfFdsIsToldItsOwnLimitOnBothTransports) {
    if (NSFD_TEST_SANITIZED) {
        // The sanitizers' runtime needs fds of its own in nsfdctl: under a few
        // fds UBSan's vptr check reports objects it could not look up.
        GTEST_SKIP() << "nsfdctl under ulimit -n 5 to 32 is checked in the plain build only";
    }
    Child target = spawnAs(kUser);
    std::string pid = std::to_string(target.pid());
    int before = daemon_->openFdCount();
    for (const std::string transport : {"bus", "varlink"}) {
        int failures = 0, successes = 0;
        for (int limit = 5; limit <= 32; ++limit) {
            // All ten namespaces: ten fds in one reply.
            auto [code, out] = nsfdctlWithLimit(limit, transport, socket_, {"--json", "ns", pid});
            SCOPED_TRACE(transport + " at ulimit -n " + std::to_string(limit) + ": " + out);
            ASSERT_TRUE(code == 0 || code == 1) << "exit " << code;
            if (code == 1) {
                ++failures;
                EXPECT_NE(out.find("ran out of file descriptors (RLIMIT_NOFILE " +
                                   std::to_string(limit) + ", hard " + std::to_string(limit) + ")"),
                          std::string::npos);
            } else {
                ++successes;
                json ns = json::parse(out);
                EXPECT_EQ(ns.size(), 10u);
            }
        }
        SCOPED_TRACE(transport);
        EXPECT_GT(failures, 0);
        EXPECT_GT(successes, 0);
    }
    // nsfdd served every one of them and kept no fd of theirs.
    expectFdsSettle(before);
    EXPECT_EQ(nsfdctlWithLimit(1024, "varlink", socket_, {"status"}).first, 0);
    target.release(0);
    target.reap();
}

}  // namespace
}  // namespace nsfd::test

namespace nsfd::test {
namespace {

// The D-Bus error of GetProcessInfoByPidFd(fd): "name: message", or "ok".
std::string dbusAnswerTo(ManagerProxy& manager, int fd) {
    try {
        manager.GetProcessInfoByPidFd(sdbus::UnixFd(fd));
        return "ok";
    } catch (const sdbus::Error& e) {
        return e.getName() + ": " + e.getMessage();
    }
}

// The Varlink answer to GetProcessInfo with `fd` as its pidfd: the reply.
varlink::ReplyMessage varlinkAnswerTo(const std::string& socket, int fd) {
    UniqueFd connection = connectTo(socket);
    EXPECT_TRUE(sendAllWithFds(connection.get(), call("GetProcessInfo", {{"pidfd", 0}}), {fd}));
    std::vector<varlink::ReplyMessage> replies = readReplies(connection.get(), 1);
    if (replies.empty()) {
        ADD_FAILURE() << "no reply";
        return {};
    }
    return std::move(replies[0]);
}

// An fd that is not a pidfd nsfdd can use is the caller's bad argument,
// named, on both doors; the process is alive, and nothing says it was reaped.
TEST_F(InteropTest, UnusablePidFdsAreInvalidArgumentsNamingPidfd) {
    Child target = spawnAs(kUser);
    PidFd pidfd = PidFd::open(target.pid());
    std::string self = "/proc/self/fd/" + std::to_string(pidfd.get());
    UniqueFd opath(::open(self.c_str(), O_PATH | O_CLOEXEC));
    ASSERT_TRUE(opath.ok()) << std::strerror(errno);
    UniqueFd thread(
        static_cast<int>(::syscall(SYS_pidfd_open, target.pid(), 0200 /* PIDFD_THREAD: O_EXCL */)));
    ASSERT_TRUE(thread.ok()) << std::strerror(errno);
    for (int fd : {opath.get(), thread.get()}) {
        std::string answer = dbusAnswerTo(*manager_, fd);
        EXPECT_EQ(answer.rfind("org.freedesktop.DBus.Error.InvalidArgs: pidfd: ", 0), 0u) << answer;
        varlink::ReplyMessage reply = varlinkAnswerTo(socket_, fd);
        ASSERT_TRUE(reply.error);
        EXPECT_EQ(*reply.error, "org.nsfd1.Manager.InvalidArgument");
        EXPECT_EQ(reply.parameters.value("parameter", ""), "pidfd");
    }
    target.release(0);
    target.reap();
}

// nsfdd in a child pid namespace (its first process, as in a container), run
// under tests/integration/in-child-pid-namespace.sh.
class OutOfSightTest : public InteropTest {
  protected:
    void SetUp() override {
        const char* wrapper = std::getenv("NSFD_TEST_DAEMON_WRAPPER");
        std::string saved = wrapper != nullptr ? wrapper : "";
        std::string inNamespace =
            "sh " NSFD_TEST_SOURCE_DIR "/tests/integration/in-child-pid-namespace.sh " + saved;
        ::setenv("NSFD_TEST_DAEMON_WRAPPER", inNamespace.c_str(), 1);
        InteropTest::SetUp();
        if (wrapper != nullptr) {
            ::setenv("NSFD_TEST_DAEMON_WRAPPER", saved.c_str(), 1);
        } else {
            ::unsetenv("NSFD_TEST_DAEMON_WRAPPER");
        }
    }
};

// A live process outside nsfdd's pid namespace: nsfdd says it cannot see it
// (PIDFD_GET_INFO: EREMOTE on 6.18), on both doors, never that it was reaped.
TEST_F(OutOfSightTest, ALiveProcessOutsideNsfddsPidNamespaceIsNamedSo) {
    Child target = spawnAs(kUser);
    PidFd pidfd = PidFd::open(target.pid());
    std::string answer = dbusAnswerTo(*manager_, pidfd.get());
    EXPECT_EQ(answer.rfind("org.nsfd1.Error.OutsidePidNamespace: ", 0), 0u) << answer;
    EXPECT_NE(answer.find("outside nsfdd's pid namespace"), std::string::npos) << answer;
    varlink::ReplyMessage reply = varlinkAnswerTo(socket_, pidfd.get());
    ASSERT_TRUE(reply.error);
    EXPECT_EQ(*reply.error, "org.nsfd1.Manager.OutsidePidNamespace");
    EXPECT_NE(reply.parameters.value("message", "").find("outside nsfdd's pid namespace"),
              std::string::npos);
    // nsfdctl, both transports: exit 1 with that message, never 5 ("no such process").
    for (const std::string transport : {"bus", "varlink"}) {
        auto [code, out] =
            nsfdctlWithLimit(1024, transport, socket_, {"info", std::to_string(target.pid())});
        EXPECT_EQ(code, 1) << transport << ": " << out;
        EXPECT_NE(out.find("outside nsfdd's pid namespace"), std::string::npos) << out;
    }
    // The process is alive all along.
    EXPECT_EQ(::kill(target.pid(), 0), 0);
    target.release(0);
    target.reap();
}

}  // namespace
}  // namespace nsfd::test

namespace nsfd::test {
namespace {

// `nsfdctl --json watch` on `transport`, its stdout and stderr one pipe read by
// lines. The destructor interrupts and reaps it.
class Watcher {
  public:
    Watcher(const std::string& transport, const std::string& socket) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) < 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
        pid_ = forkProcess();
        if (pid_ == 0) {
            ::dup2(writeEnd.get(), 1);
            ::dup2(writeEnd.get(), 2);
            ::setenv("NSFD_VARLINK_SOCKET", socket.c_str(), 1);
            std::string option = "--transport=" + transport;
            ::execl(NSFD_TEST_NSFDCTL, "nsfdctl", "--json", option.c_str(), "watch", nullptr);
            ::_exit(127);
        }
        out_ = LineReader(std::move(readEnd));
    }
    ~Watcher() {
        ::kill(pid_, SIGINT);
        reapWithin(pid_, "nsfdctl watch to exit after SIGINT");
    }
    Watcher(const Watcher&) = delete;
    Watcher& operator=(const Watcher&) = delete;

    // The next line of its output, without the newline; nullopt after `timeout` or at its end.
    std::optional<std::string> readLine(std::chrono::milliseconds timeout = 10s) {
        return out_.readLine(timeout);
    }
    // The next exit it prints as JSON; nullopt if it prints something else or nothing.
    std::optional<json> nextExit() {
        std::optional<std::string> line = readLine();
        if (!line) {
            return std::nullopt;
        }
        json parsed = json::parse(*line, nullptr, false);
        if (parsed.is_discarded() || !parsed.is_object()) {
            ADD_FAILURE() << "nsfdctl watch printed: " << *line;
            return std::nullopt;
        }
        return parsed;
    }
    bool running() const { return ::waitpid(pid_, nullptr, WNOHANG) == 0; }

  private:
    pid_t pid_ = -1;
    LineReader out_;
};

// `nsfdctl watch` reports the exits after nsfdd restarted by hand (no socket
// activation, no fd store: its bus name and Varlink socket are gone meanwhile),
// on both transports, after SIGKILL and after SIGTERM.
TEST_F(InteropTest, NsfdctlWatchReportsExitsAfterARestart) {
    for (const std::string transport : {"bus", "varlink"}) {
        for (bool crash : {true, false}) {
            SCOPED_TRACE(transport + (crash ? ", kill -9" : ", SIGTERM"));
            Watcher watcher(transport, socket_);
            ASSERT_EQ(watcher.readLine().value_or(""),
                      "Watching exits of tracked processes (Ctrl-C to stop)");
            Child before = spawnAs(kUser);
            manager_->TrackProcess(static_cast<uint32_t>(before.pid()));
            before.release(3);
            before.reap();
            std::optional<json> first = watcher.nextExit();
            ASSERT_TRUE(first);
            EXPECT_EQ(first->at("pid").get<pid_t>(), before.pid());
            if (crash) {
                daemon_->kill9();
            } else {
                EXPECT_EQ(daemon_->stop(), 0);
            }
            daemon_.reset();
            std::this_thread::sleep_for(1500ms);  // away for more than one retry
            daemon_ = std::make_unique<Daemon>(busAddress(),
                                               Daemon::Options{config(), {}, "debug", 0, socket_});
            Child after = spawnAs(kUser);
            manager_->TrackProcess(static_cast<uint32_t>(after.pid()));
            // The watcher tries a Varlink socket again each second: two tries, for a loaded
            // machine.
            std::this_thread::sleep_for(2500ms);
            after.release(7);
            after.reap();
            std::optional<json> next = watcher.nextExit();
            ASSERT_TRUE(next) << "nsfdctl watch missed an exit after the restart";
            EXPECT_EQ(next->at("pid").get<pid_t>(), after.pid());
            EXPECT_EQ(next->at("wait_status").get<int>(), 7 << 8);
            EXPECT_TRUE(watcher.running());
        }
    }
}

}  // namespace
}  // namespace nsfd::test

namespace nsfd::test {
namespace {

// The same with socket activation: the test holds the listening socket, as
// systemd's nsfdd.socket does, and hands it to each nsfdd (LISTEN_FDS), so the
// socket never goes away; the watcher's new connection waits in its backlog.
TEST_F(InteropTest, NsfdctlWatchReportsExitsAcrossASocketActivatedRestart) {
    std::string path = dir_->path() + "/activated";
    UniqueFd listening(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(listening.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::listen(listening.get(), 16), 0);
    auto startActivated = [&] {
        Daemon::FdStore handOver;
        handOver.emplace("varlink", duplicateFd(listening.get()));
        daemon_ = std::make_unique<Daemon>(
            busAddress(), Daemon::Options{config(), std::move(handOver), "debug", 0, ""});
    };
    daemon_->stop();
    daemon_.reset();
    startActivated();
    for (bool crash : {true, false}) {
        SCOPED_TRACE(crash ? "kill -9" : "SIGTERM");
        Watcher watcher("varlink", path);
        ASSERT_EQ(watcher.readLine().value_or(""),
                  "Watching exits of tracked processes (Ctrl-C to stop)");
        if (crash) {
            daemon_->kill9();
        } else {
            EXPECT_EQ(daemon_->stop(), 0);
        }
        daemon_.reset();
        std::this_thread::sleep_for(500ms);  // the watcher is queued in the backlog meanwhile
        startActivated();
        Child after = spawnAs(kUser);
        manager_->TrackProcess(static_cast<uint32_t>(after.pid()));
        // The watcher's queued connection is served once nsfdd is up: no retry
        // interval here, but its WatchExits must be read before the exit.
        std::this_thread::sleep_for(500ms);
        after.release(9);
        after.reap();
        std::optional<json> next = watcher.nextExit();
        ASSERT_TRUE(next) << "nsfdctl watch missed an exit after the restart";
        EXPECT_EQ(next->at("pid").get<pid_t>(), after.pid());
        EXPECT_EQ(next->at("wait_status").get<int>(), 9 << 8);
        EXPECT_TRUE(watcher.running());
    }
    ::unlink(path.c_str());
}

}  // namespace
}  // namespace nsfd::test
