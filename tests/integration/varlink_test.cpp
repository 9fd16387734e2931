// SPDX-License-Identifier: LGPL-2.1-or-later
// The Varlink endpoint of a real nsfdd, driven by a client that is not nsfd's
// C++ code (tests/varlink/nsfd_check.py, Python's standard library) as real
// users, and by raw sockets that break the protocol.
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fixture.hpp"
#include "varlink/codec.hpp"
#include "varlink/socket_io.hpp"
#include "varlink_connection.hpp"

namespace nsfd::test {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

// Paths the tests join into commands; a throw at start ends the test binary.
// NOLINTBEGIN(cert-err58-cpp)
const std::string kCheck = NSFD_TEST_SOURCE_DIR "/tests/varlink/nsfd_check.py";
const std::string kClient = NSFD_TEST_SOURCE_DIR "/tests/varlink/varlink_client.py";
// NOLINTEND(cert-err58-cpp)

// python3 with `args`, as uid (its gid the same) with `groups`; its stdout a
// pipe read by lines. The destructor kills and reaps it if it still runs.
// `sandboxed`: in a user namespace mapping root to uid and a pid namespace of
// its own (`unshare --user --map-root-user --pid --fork`). `inherit`: an fd it
// keeps open across exec.
class PythonClient {
  public:
    PythonClient(uid_t uid, const std::vector<gid_t>& groups, std::vector<std::string> args,
                 bool sandboxed = false, int inherit = -1) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) < 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
        args.insert(args.begin(), "python3");
        if (sandboxed) {
            args.insert(args.begin(),
                        {"unshare", "--user", "--map-root-user", "--pid", "--fork", "--"});
        }
        pid_ = forkProcess();
        if (pid_ == 0) {
            ::dup2(writeEnd.get(), 1);
            if (inherit >= 0) {
                ::fcntl(inherit, F_SETFD, 0);
            }
            if (::setgroups(groups.size(), groups.data()) < 0 || ::setresgid(uid, uid, uid) < 0 ||
                ::setresuid(uid, uid, uid) < 0) {
                ::_exit(126);
            }
            std::vector<char*> argv;
            argv.reserve(args.size() + 1);
            for (std::string& arg : args) {
                argv.push_back(arg.data());
            }
            argv.push_back(nullptr);
            ::execvp(argv[0], argv.data());
            ::_exit(127);
        }
        out_ = LineReader(std::move(readEnd));
    }
    ~PythonClient() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            reapWithin(pid_, "a python client to die of SIGKILL");
        }
    }
    PythonClient(const PythonClient&) = delete;
    PythonClient& operator=(const PythonClient&) = delete;

    // The next line of its output, without the newline; nullopt after `timeout` or at its end.
    std::optional<std::string> readLine(std::chrono::milliseconds timeout = 10s) {
        return out_.readLine(timeout);
    }

    // Reads its output to the end and reaps it: {wait status, output not read yet}.
    std::pair<int, std::string> finish() {
        std::string rest;
        while (std::optional<std::string> line = readLine()) {
            rest += *line + "\n";
        }
        rest += out_.rest();
        int status = reapWithin(pid_, "a python client to exit");
        pid_ = -1;
        return {status, rest};
    }

    // Everything it prints, to its end: {wait status, output}.
    static std::pair<int, std::string> run(uid_t uid, const std::vector<gid_t>& groups,
                                           std::vector<std::string> args, bool sandboxed = false,
                                           int inherit = -1) {
        return PythonClient(uid, groups, std::move(args), sandboxed, inherit).finish();
    }

  private:
    pid_t pid_ = -1;
    LineReader out_;
};

// Writes `text` to an existing file (a sysctl); false if it cannot.
bool writeFile(const std::string& path, const std::string& text) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    return fd.ok() &&
           ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

// Each line of `text` as JSON (a client's replies, one per line).
std::vector<Json> jsonLines(const std::string& text) {
    std::vector<Json> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) {
            lines.push_back(Json::parse(line));
        }
    }
    return lines;
}

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

// Sends `bytes`, with `fds` on the first byte; false if nsfdd hung up.
bool sendRaw(int socket, std::string_view bytes, const std::vector<int>& fds = {}) {
    return sendAllWithFds(socket, bytes, fds);
}

// Reads until nsfdd hangs up (true) or `timeout` (false); closes every fd received.
bool readsToEnd(int socket, std::string* got = nullptr, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        struct pollfd pfd = {socket, POLLIN, 0};
        if (left <= 0ms || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
            return false;
        }
        char buffer[65536];
        varlink::Received received;  // its fds close with it
        int r = varlink::receiveWithFds(socket, buffer, received);
        if (r == -EAGAIN || r == -EINTR) {
            continue;
        }
        if (r < 0 || received.bytes == 0) {
            return r == 0 || r == -ECONNRESET;
        }
        std::size_t n = received.bytes;
        if (got != nullptr) {
            got->append(buffer, n);
        }
    }
}

// kGrantConfig, its grant also Spawn's for the net namespace alone (`enter`),
// so that the table's Spawn rows tell a granted type from one not granted.
const char* const kGrantConfigWithEnter = R"(
[limits]
tracked-per-user = 3
retention-seconds = 1

[[grant]]
group = "users"
namespaces = ["net", "uts"]
info = true
enter = ["net"]
)";

// A process of nsfd-test-a (its gid the same) in a user namespace it made, and
// so owns, and net, uts and ipc namespaces owned by that one: the namespaces a
// rootless container of that user has, which it may enter itself (setns(2)
// through the user namespace it owns) if the process is dumpable, and nobody
// else may without root.
Child spawnInOwnNamespaces(bool dumpable) {
    return Child::spawn(
        [dumpable] {
            if (::setresgid(kUser, kUser, kUser) < 0 || ::setresuid(kUser, kUser, kUser) < 0 ||
                ::unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC) < 0 ||
                ::prctl(PR_SET_DUMPABLE, dumpable ? 1 : 0) < 0) {
                return errno;
            }
            return 0;
        },
        Child::Options{0, 0});
}

class VarlinkTest : public DaemonTest {
  protected:
    std::string config() const override { return kGrantConfigWithEnter; }
    std::string varlinkPath() const override { return socket_; }

    void SetUp() override {
        if (kUser == 0 || kOtherUser == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test-users)";
        }
        dir_.emplace();
        socket_ = dir_->socket();
        DaemonTest::SetUp();
    }

    void TearDown() override {
        DaemonTest::TearDown();
        dir_.reset();
    }

    // nsfd_check.py COMMAND SOCKET ARGS... as `uid`: {wait status, output}.
    std::pair<int, std::string> check(uid_t uid, const std::vector<gid_t>& groups,
                                      const std::string& command,
                                      const std::vector<std::string>& args, bool sandboxed = false,
                                      int inherit = -1) {
        std::vector<std::string> argv = {kCheck, command, socket_};
        argv.insert(argv.end(), args.begin(), args.end());
        return PythonClient::run(uid, groups, std::move(argv), sandboxed, inherit);
    }

    // One call by varlink_client.py as `uid`: {wait status, the reply's line}.
    std::pair<int, std::string> callAs(uid_t uid, const std::string& method,
                                       const std::string& parameters = "{}") {
        return PythonClient::run(uid, {}, {kClient, socket_, method, parameters});
    }

    // Alive and serving: a call by another client gets its answer.
    void expectServing() {
        auto [status, out] = callAs(kOtherUser, "org.nsfd1.Manager.GetServiceInfo");
        EXPECT_EQ(status, 0) << out;
        EXPECT_NE(out.find("\"version\""), std::string::npos) << out;
    }

    // nsfdd's open fds settle back to `count` or fewer: none is left of what
    // the test did (fewer: something of nsfdd's start, open when `count` was
    // taken, has closed since, as one run on dbus-broker saw).
    void expectFdsSettle(int count) {
        for (int i = 0; i < 200 && daemon_->openFdCount() > count; ++i) {
            std::this_thread::sleep_for(10ms);
        }
        EXPECT_LE(daemon_->openFdCount(), count);
    }

    std::optional<SocketDir> dir_;
    std::string socket_;
};

TEST_F(VarlinkTest, EveryMethodThroughTheSocket) {
    Child target = spawnAs(kUser);
    auto [status, out] = check(0, {}, "methods", {std::to_string(target.pid())});
    EXPECT_EQ(status, 0) << out;
    EXPECT_EQ(out, "ok\n");
    target.release(0);
    target.reap();
}

TEST_F(VarlinkTest, ReadmePythonExampleGetsTheNamespace) {
    std::string readme = readFile(NSFD_TEST_SOURCE_DIR "/README.md");
    std::size_t section = readme.find("### Varlink");
    std::size_t start = readme.find("```python\n", section);
    ASSERT_NE(start, std::string::npos);
    start += 10;
    std::string code = readme.substr(start, readme.find("```", start) - start);
    const std::string path = "/run/nsfd/org.nsfd1.Manager";
    code.replace(code.find(path), path.size(), socket_);
    Child target = spawnAs(kUser);  // pid 1 may be out of reach in a container
    const std::string pid1 = "\"pid\": 1,";
    code.replace(code.find(pid1), pid1.size(), "\"pid\": " + std::to_string(target.pid()) + ",");
    auto [status, out] = PythonClient::run(0, {}, {"-c", code});
    EXPECT_EQ(status, 0) << out;
    char link[256] = {};
    ASSERT_GT(::readlink(nsPath(target.pid(), "net").c_str(), link, sizeof(link) - 1), 0);
    EXPECT_EQ(out, std::string(link) + "\n");
    target.release(0);
    target.reap();
}

TEST_F(VarlinkTest, AuthorizationTableAsRealUsers) {
    // The D-Bus table (authorization_table_test.cpp), its rows that Varlink has;
    // a process the caller may not see is NotTracked (D-Bus: UnknownObject).
    // Then Spawn's (Varlink only), each /bin/true, ok once its waitStatus 0
    // came: on the target, whose namespaces are every caller's own but the
    // sandboxes' ("the caller's own"), and on a process of the same user in
    // namespaces of its own (and as dumpable as the column's target), which
    // only that user may enter itself, through the user namespace it owns.
    // The grant (kGrantConfigWithEnter) gives net, not uts; polkitd is not
    // running, so polkit allows nothing; no type but net, uts and ipc is
    // Spawn's for anyone, root included (the IDL: InvalidArgument).
    Child dumpable = spawnAs(kUser, true);
    Child nonDumpable = spawnAs(kUser, false);
    Child ownDumpable = spawnInOwnNamespaces(true);
    Child ownNonDumpable = spawnInOwnNamespaces(false);
    int daemonFds = daemon_->openFdCount();
    struct Column {
        uid_t uid;
        std::vector<gid_t> groups;
        bool nonDumpableTarget;
        bool sandboxed;  // its own user and pid namespace; the target outside
    };
    const std::vector<Column> columns = {
        {0, {}, false, false},
        {kUser, {}, false, false},
        {kUser, {}, true, false},
        {kOtherUser, {}, false, false},
        {kOtherUser, {kGrantedGroup}, false, false},
        {kUser, {}, false, true},
        {kOtherUser, {kGrantedGroup}, false, true},
    };
    const char* const expected = R"(
TrackProcess: ok ok ok AccessDenied ok ForeignPidNamespace ForeignPidNamespace
TrackProcess pidfd: ok ok ok AccessDenied ok AccessDenied AccessDenied
GetProcess: ok ok ok NotTracked ok ForeignPidNamespace ForeignPidNamespace
ListProcesses shows it: ok ok ok NotListed ok NotListed NotListed
GetNamespace net: ok ok AccessDenied AccessDenied ok ForeignPidNamespace ForeignPidNamespace
GetNamespace mnt: ok ok AccessDenied AccessDenied AccessDenied ForeignPidNamespace ForeignPidNamespace
GetNamespaces net uts: ok ok AccessDenied AccessDenied ok ForeignPidNamespace ForeignPidNamespace
GetProcessInfo: ok ok ok AccessDenied ok ForeignPidNamespace ForeignPidNamespace
GetNamespace id net: ok ok AccessDenied NotTracked ok NotTracked NotTracked
GetNamespaceIds id: ok ok ok NotTracked ok NotTracked NotTracked
GetProcessInfo id: ok ok ok NotTracked ok NotTracked NotTracked
GetPidFd: ok ok AccessDenied NotTracked AccessDenied NotTracked NotTracked
SendSignal CONT: ok ok ok NotTracked AccessDenied NotTracked NotTracked
GetFd 0: ok AccessDenied AccessDenied NotTracked AccessDenied NotTracked NotTracked
Spawn net, the caller's own: ok ok ok ok ok ForeignPidNamespace ForeignPidNamespace
Spawn net: ok ok AccessDenied AccessDenied ok ForeignPidNamespace ForeignPidNamespace
Spawn net uts: ok ok AccessDenied AccessDenied AccessDenied ForeignPidNamespace ForeignPidNamespace
Spawn mnt: InvalidArgument InvalidArgument InvalidArgument InvalidArgument InvalidArgument InvalidArgument InvalidArgument
UntrackProcess: ok ok ok NotTracked ok NotTracked NotTracked
)";
    std::vector<std::string> names;
    std::map<std::string, std::vector<std::string>> cells;
    for (const Column& column : columns) {
        const Child& target = column.nonDumpableTarget ? nonDumpable : dumpable;
        auto pid = static_cast<uint32_t>(target.pid());
        manager_->TrackProcess(pid);  // root tracks the target, again after an Untrack
        std::uint64_t id = PidFd::open(target.pid()).id();
        const Child& spawnTarget = column.nonDumpableTarget ? ownNonDumpable : ownDumpable;
        // A sandbox cannot name the target: it gets a pidfd opened outside.
        PidFd pidfd = PidFd::open(target.pid());
        std::vector<std::string> args = {std::to_string(pid), std::to_string(id),
                                         "spawn=" + std::to_string(spawnTarget.pid())};
        if (column.sandboxed) {
            args.push_back(std::to_string(pidfd.get()));
        }
        auto [status, out] = check(column.uid, column.groups, "table", args, column.sandboxed,
                                   column.sandboxed ? pidfd.get() : -1);
        ASSERT_EQ(status, 0) << out;
        std::istringstream lines(out);
        for (std::string line; std::getline(lines, line);) {
            std::string name = line.substr(0, line.find(':'));
            if (cells[name].empty() && &column == &columns.front()) {
                names.push_back(name);
            }
            cells[name].push_back(line.substr(line.find(':') + 2));
        }
    }
    std::string table = "\n";
    for (const std::string& name : names) {
        table += name + ":";
        for (const std::string& cell : cells[name]) {
            table += " " + cell;
        }
        table += "\n";
    }
    EXPECT_EQ(table, expected) << "columns: root | same uid | same uid, target not dumpable | "
                                  "other uid | other uid, granted group | same uid, in a sandbox "
                                  "| other uid, granted group, in a sandbox";
    // Every run ended: no nsfd-helper left below nsfdd; and below, once the
    // targets (tracked by root) are reaped and their 1 s of retention is over,
    // no fd of a call or a run kept.
    for (int i = 0; i < 1000 && !childrenOf(daemon_->pid()).empty(); ++i) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(childrenOf(daemon_->pid()).size(), 0U) << "a helper outlived its run";
    dumpable.release(0);
    nonDumpable.release(0);
    ownDumpable.release(0);
    ownNonDumpable.release(0);
    dumpable.reap();
    nonDumpable.reap();
    ownDumpable.reap();
    ownNonDumpable.reap();
    for (int i = 0; i < 1000 && daemon_->openFdCount() > daemonFds; ++i) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_LE(daemon_->openFdCount(), daemonFds) << "nsfdd kept an fd of a call or a run";
}

class VarlinkSandboxGrantTest : public VarlinkTest {
  protected:
    std::string config() const override { return kSandboxGrantConfig; }
};

TEST_F(VarlinkSandboxGrantTest, AGrantMarkedSandboxedReachesOutsideTheSandbox) {
    // authorization_table_test.cpp's SandboxGrantTableTest, over Varlink: a
    // member of the granted group in a sandbox, the target outside it.
    Child target = spawnAs(kUser);
    auto pid = static_cast<uint32_t>(target.pid());
    manager_->TrackProcess(pid);
    PidFd pidfd = PidFd::open(target.pid());
    auto [status, out] =
        check(kOtherUser, {kGrantedGroup}, "table",
              {std::to_string(pid), std::to_string(pidfd.id()), std::to_string(pidfd.get())}, true,
              {pidfd.get()});
    EXPECT_EQ(status, 0) << out;
    EXPECT_EQ(out, R"(TrackProcess: ForeignPidNamespace
TrackProcess pidfd: ok
GetProcess: ForeignPidNamespace
ListProcesses shows it: ok
GetNamespace net: ForeignPidNamespace
GetNamespace mnt: ForeignPidNamespace
GetNamespaces net uts: ForeignPidNamespace
GetProcessInfo: ForeignPidNamespace
GetNamespace id net: ok
GetNamespaceIds id: ok
GetProcessInfo id: ok
GetPidFd: ok
SendSignal CONT: AccessDenied
GetFd 0: AccessDenied
UntrackProcess: ok
)");
    target.release(0);
    target.reap();
}

TEST_F(VarlinkTest, ACallerInAnotherPidNamespaceNamesProcessesByPidFd) {
    // As flatpak apps and containers that mount /run/nsfd are: its pids are not nsfdd's.
    std::string script = "sleep 100 & p=$!; python3 " + kCheck + " foreign " + socket_ +
                         " $p; r=$?; kill $p; exit $r";
    auto [status, out] = forkAndRead([&](int fd) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
        ::execlp("unshare", "unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
                 script.c_str(), nullptr);
        ::_exit(127);
    });
    EXPECT_EQ(status, 0) << out;
    EXPECT_EQ(out, "ok\n");
}

TEST_F(VarlinkTest, ClientThatNeverReadsIsDisconnectedAlone) {
    int fdsBefore = daemon_->openFdCount();
    Child target = spawnAs(kUser);
    UniqueFd greedy = connectTo(socket_);
    // Each reply holds a namespace fd: nsfdd's unsent bound is reached long
    // before the calls run out, and it hangs up on this client alone.
    std::string request = varlink::encodeCall("org.nsfd1.Manager.GetNamespace",
                                              {{"pid", target.pid()}, {"type", "net"}});
    ASSERT_EQ(::fcntl(greedy.get(), F_SETFL, O_NONBLOCK), 0);
    bool hungUp = false;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    for (int sent = 0; sent < 20000 && !hungUp && std::chrono::steady_clock::now() < deadline;) {
        ssize_t n = ::send(greedy.get(), request.data(), request.size(), MSG_NOSIGNAL);
        if (n == static_cast<ssize_t>(request.size())) {
            ++sent;
        } else if (n < 0 && errno == EAGAIN) {
            expectServing();  // others are served meanwhile
        } else {
            hungUp = true;
        }
    }
    ASSERT_EQ(::fcntl(greedy.get(), F_SETFL, 0), 0);
    EXPECT_TRUE(readsToEnd(greedy.get())) << "nsfdd did not hang up on a client that never reads";
    greedy.reset();
    expectServing();
    EXPECT_NE(daemon_->log().find("does not read its replies"), std::string::npos);
    expectFdsSettle(fdsBefore);
    target.release(0);
    target.reap();
}

TEST_F(VarlinkTest, BrokenClientsAreHungUpOnAlone) {
    int fdsBefore = daemon_->openFdCount();
    auto hangsUpAfter = [&](const std::string& bytes, const std::vector<int>& fds = {}) {
        UniqueFd client = connectTo(socket_);
        sendRaw(client.get(), bytes, fds);
        std::string got;
        bool ended = readsToEnd(client.get(), &got, 5s);
        return ended ? got : "still open after: " + got;
    };
    EXPECT_EQ(hangsUpAfter(std::string("this is not JSON") + '\0'), "");
    EXPECT_EQ(hangsUpAfter(std::string(1 << 20, '{')), "");  // huge: no NUL within the bound
    std::string deep = "{\"method\":\"org.nsfd1.Manager.GetServiceInfo\",\"parameters\":{\"a\":" +
                       std::string(200, '[') + std::string(200, ']') + "}}" + '\0';
    EXPECT_EQ(hangsUpAfter(deep), "");
    {
        UniqueFd half = connectTo(socket_);
        sendRaw(half.get(), "{\"method\":\"org.nsfd1.Man");
    }
    // 200 fds with one call: refused, every one closed, the connection kept.
    std::vector<UniqueFd> many;
    std::vector<int> numbers;
    for (int i = 0; i < 200; ++i) {
        many.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        numbers.push_back(many.back().get());
    }
    {
        UniqueFd client = connectTo(socket_);
        ASSERT_TRUE(sendRaw(client.get(),
                            varlink::encodeCall("org.nsfd1.Manager.GetServiceInfo", Json::object()),
                            numbers));
        many.clear();
        ::shutdown(client.get(), SHUT_WR);
        std::string got;
        EXPECT_TRUE(readsToEnd(client.get(), &got));
        EXPECT_NE(got.find("org.nsfd1.Manager.LimitExceeded"), std::string::npos) << got;
    }
    expectServing();
    expectFdsSettle(fdsBefore);
}

TEST_F(VarlinkTest, WatchExitsTellsEachCallerOnlyOfWhatItMaySee) {
    Child canaryA = spawnAs(kUser), targetA = spawnAs(kUser);
    std::uint64_t idA = PidFd::open(targetA.pid()).id();
    // B's target gets A's id as its pid (pidfs ids are counters in the range
    // of pids): news compared as text rather than as numbers would match.
    // pid_max is raised for that moment if the id is beyond it.
    Child canaryB = spawnAs(kOtherUser);
    std::optional<Child> targetB;
    {
        const char* pidMaxFile = "/proc/sys/kernel/pid_max";
        std::string pidMax = readFile(pidMaxFile);
        bool raised = std::stoull(pidMax) <= idA && writeFile(pidMaxFile, std::to_string(idA + 1));
        bool free = ::kill(static_cast<pid_t>(idA), 0) < 0 && errno == ESRCH;
        targetB.emplace(spawnAs(kOtherUser, true, free ? static_cast<pid_t>(idA) : 0));
        if (raised) {
            EXPECT_TRUE(writeFile(pidMaxFile, pidMax));
        }
        EXPECT_EQ(static_cast<std::uint64_t>(targetB->pid()), idA)
            << "could not give B's target A's id as its pid";
    }
    auto pidOf = [](const Child& c) { return std::to_string(c.pid()); };
    PythonClient a(kUser, {}, {kCheck, "watch", socket_, "2", pidOf(canaryA), pidOf(targetA)});
    PythonClient b(kOtherUser, {},
                   {kCheck, "watch", socket_, "2", pidOf(canaryB), pidOf(*targetB)});
    ASSERT_EQ(a.readLine(), "watching");
    ASSERT_EQ(b.readLine(), "watching");
    // Each stream is in place ("watching": nsfdd's ready reply came); each tells of its canary.
    canaryA.release(1);
    canaryA.reap();
    canaryB.release(1);
    canaryB.reap();
    std::optional<std::string> firstA = a.readLine(), firstB = b.readLine();
    ASSERT_TRUE(firstA && firstB);
    EXPECT_EQ(Json::parse(*firstA).at("pid"), canaryA.pid()) << *firstA;
    EXPECT_EQ(Json::parse(*firstB).at("pid"), canaryB.pid()) << *firstB;

    targetA.release(42);
    int pidA = targetA.pid();
    targetA.reap();
    std::optional<std::string> exitA = a.readLine();
    ASSERT_TRUE(exitA);
    EXPECT_EQ(Json::parse(*exitA), (Json{{"id", idA}, {"pid", pidA}, {"waitStatus", 42 << 8}}));
    // WatchExits of one process, reaped already (retained 1 s): the ready reply
    // (it continues), then its exit, which ends the stream.
    Json one = {{"id", idA}};
    auto [statusOne, outOne] = PythonClient::run(
        kUser, {}, {kClient, socket_, "org.nsfd1.Manager.WatchExits", one.dump(), "--more"});
    EXPECT_EQ(statusOne, 0) << outOne;
    std::vector<Json> replies = jsonLines(outOne);
    ASSERT_EQ(replies.size(), 2u) << outOne;
    Json none = Json::array();  // fds
    EXPECT_EQ(replies[0],
              (Json{{"parameters", {{"ready", true}}}, {"continues", true}, {"fds", none}}));
    EXPECT_EQ(replies[1],
              (Json{{"parameters", {{"id", idA}, {"pid", pidA}, {"waitStatus", 42 << 8}}},
                    {"fds", none}}));
    auto [statusOther, outOther] = PythonClient::run(
        kOtherUser, {}, {kClient, socket_, "org.nsfd1.Manager.WatchExits", one.dump(), "--more"});
    replies = jsonLines(outOther);
    ASSERT_EQ(replies.size(), 1u) << outOther;
    EXPECT_EQ(replies[0].value("error", ""), "org.nsfd1.Manager.NotTracked") << outOther;
    // B's next news is of its own process: nothing of A's came in between.
    targetB->release(7);
    int pidB = targetB->pid();
    targetB->reap();
    std::optional<std::string> exitB = b.readLine();
    ASSERT_TRUE(exitB);
    Json newsB = Json::parse(*exitB);
    EXPECT_EQ(newsB.at("pid"), pidB) << *exitB;
    EXPECT_NE(newsB.at("id"), idA) << *exitB;
    EXPECT_EQ(newsB.at("waitStatus"), 7 << 8) << *exitB;
    auto [statusA, restA] = a.finish();
    auto [statusB, restB] = b.finish();
    EXPECT_EQ(statusA, 0);
    EXPECT_EQ(statusB, 0);
    EXPECT_EQ(restA, "");  // told of its exit once
    EXPECT_EQ(restB, "");
}

TEST_F(VarlinkTest, RestartGivesConnectedClientsEndOfFile) {
    PythonClient held(kUser, {}, {kCheck, "hold", socket_});
    ASSERT_EQ(held.readLine(), "connected");
    int status = daemon_->stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << daemon_->log();
    EXPECT_EQ(held.readLine(), "eof");
    EXPECT_EQ(held.finish().first, 0);
    daemon_ =
        std::make_unique<Daemon>(busAddress(), Daemon::Options{config(), {}, "debug", 0, socket_});
    expectServing();
}

TEST_F(VarlinkTest, ServesTheSocketSystemdPassesBesideTheFdStore) {
    // A crash: systemd hands the next nsfdd its fd store and the socket of nsfdd.socket.
    Child target = spawnAs(kUser);
    std::string tracked = manager_->TrackProcess(static_cast<uint32_t>(target.pid()));
    daemon_->kill9();
    Daemon::FdStore handOver = daemon_->takeFdStore();
    daemon_.reset();
    std::string path = dir_->path() + "/activated";
    UniqueFd listening(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(listening.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
    ASSERT_EQ(::listen(listening.get(), 16), 0);
    handOver.emplace("varlink", std::move(listening));
    // No --varlink: the passed socket alone, told apart from the pidfds by its name.
    daemon_ = std::make_unique<Daemon>(
        busAddress(), Daemon::Options{config(), std::move(handOver), "debug", 0, ""});
    std::string id = tracked.substr(tracked.rfind('/') + 1);
    auto [status, out] = PythonClient::run(
        kUser, {},
        {kClient, path, "org.nsfd1.Manager.GetProcess", Json{{"pid", target.pid()}}.dump()});
    EXPECT_EQ(status, 0) << out << daemon_->log();
    std::vector<Json> replies = jsonLines(out);
    ASSERT_EQ(replies.size(), 1u) << out;
    EXPECT_EQ(replies[0].at("parameters").at("id"), std::stoull(id)) << out;  // restored
    // Not taken for a pidfd: nsfdd would have dropped it from the store.
    std::vector<std::string> names = daemon_->fdStoreNames();
    EXPECT_EQ(std::count(names.begin(), names.end(), "varlink"), 1);
    ::unlink(path.c_str());
    target.release(0);
    target.reap();
}

}  // namespace
}  // namespace nsfd::test
