// SPDX-License-Identifier: LGPL-2.1-or-later
// Brokered runs (Spawn, nsfdctl exec for a non-root user) on a real nsfdd and
// its real nsfd-helper, as real users, in real namespaces: the command sees the
// target's network, hostname and IPC, and is otherwise exactly its caller, in
// the caller's own mount namespace; it never outlives the caller.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "fixture.hpp"
#include "nsfd-helper/run_limits.hpp"
#include "nsfd/client.hpp"
#include "varlink/socket_io.hpp"
#include "varlink_connection.hpp"

namespace nsfd::test {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

gid_t gidOf(const char* name) noexcept {
    struct passwd* pw = ::getpwnam(name);
    return pw == nullptr ? 0 : pw->pw_gid;
}
const gid_t kUserGid = gidOf("nsfd-test-a");
const gid_t kOtherGid = gidOf("nsfd-test-b");

const char* const kEnterGrant = R"(
[polkit]
enabled = false

[[grant]]
user = "nsfd-test-a"
enter = ["net", "uts", "ipc"]
)";

// The interface names of /proc/PID/net/dev: the links of its network namespace.
std::set<std::string> linksOf(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/net/dev");
    std::set<std::string> names;
    for (std::string line; std::getline(in, line);) {
        std::size_t colon = line.find(':');
        if (colon != std::string::npos) {
            std::string name = line.substr(0, colon);
            names.insert(name.substr(name.find_first_not_of(' ')));
        }
    }
    return names;
}

std::vector<std::string> linesOf(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    return lines;
}

// "Key:\tvalue" lines of a /proc/PID/status text.
std::map<std::string, std::string> statusFields(const std::string& text) {
    std::map<std::string, std::string> fields;
    for (const std::string& line : linesOf(text)) {
        std::size_t colon = line.find(':');
        if (colon == std::string::npos) {
            continue;
        }
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(" \t"));
        value.erase(value.find_last_not_of(" \t") + 1);
        fields[line.substr(0, colon)] = value;
    }
    return fields;
}

std::string readAll(int fd) {
    std::string out;
    char buffer[4096];
    for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) != 0;) {
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            break;
        }
        out.append(buffer, static_cast<std::size_t>(n));
    }
    return out;
}

// One line from `fd`, waiting up to kWaitLimit.
std::string readLine(int fd) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
    for (char c = 0; c != '\n';) {
        pollfd p{fd, POLLIN, 0};
        if (std::chrono::steady_clock::now() > deadline || ::poll(&p, 1, 1000) < 0) {
            throwWaitTimedOut("a line from the command");
        }
        if ((p.revents & (POLLIN | POLLHUP)) == 0) {
            continue;
        }
        if (::read(fd, &c, 1) != 1) {
            break;
        }
        if (c != '\n') {
            line.push_back(c);
        }
    }
    return line;
}

// nsfdctl run by a forked child as uid/gid (and `groups`), its stdio on pipes.
// `prepare` runs in the child first, as root (a private mount namespace, say).
class NsfdctlRun {
  public:
    struct Options {
        uid_t uid = kUser;
        gid_t gid = kUserGid;
        std::vector<gid_t> groups;
        std::string input;  // written to its stdin, which is then closed
        std::function<int()> prepare;
    };

    NsfdctlRun(const std::vector<std::string>& args, Options options) {
        int in[2], out[2], err[2];
        if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0 ||
            ::pipe2(err, O_CLOEXEC) < 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        std::vector<std::string> argv{NSFD_TEST_NSFDCTL};
        argv.insert(argv.end(), args.begin(), args.end());
        std::vector<char*> pointers;
        pointers.reserve(argv.size() + 1);
        for (std::string& arg : argv) {
            pointers.push_back(arg.data());
        }
        pointers.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ == 0) {
            if (options.prepare && options.prepare() != 0) {
                ::_exit(90);
            }
            if (::dup2(in[0], 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(err[1], 2) < 0 ||
                ::setgroups(options.groups.size(), options.groups.data()) < 0 ||
                ::setresgid(options.gid, options.gid, options.gid) < 0 ||
                ::setresuid(options.uid, options.uid, options.uid) < 0) {
                ::_exit(91);
            }
            ::execv(pointers[0], pointers.data());
            ::_exit(92);
        }
        ::close(in[0]);
        ::close(out[1]);
        ::close(err[1]);
        stdin_.reset(in[1]);
        stdout_.reset(out[0]);
        stderr_.reset(err[0]);
        if (!options.input.empty()) {
            EXPECT_EQ(::write(stdin_.get(), options.input.data(), options.input.size()),
                      static_cast<ssize_t>(options.input.size()));
        }
        stdin_.reset();
    }
    NsfdctlRun(const NsfdctlRun&) = delete;
    ~NsfdctlRun() {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            reapWithin(pid_, "nsfdctl to die");
        }
    }

    pid_t pid() const { return pid_; }
    int out() const { return stdout_.get(); }

    struct Result {
        int exitCode = -1;  // -1: it did not exit
        int status = 0;
        std::string out, err;
    };
    Result finish() {
        Result result;
        result.out = readAll(stdout_.get());
        result.err = readAll(stderr_.get());
        result.status = reapWithin(pid_, "nsfdctl exec to end");
        reaped_ = true;
        result.exitCode = WIFEXITED(result.status) ? WEXITSTATUS(result.status) : -1;
        return result;
    }

  private:
    pid_t pid_ = -1;
    bool reaped_ = false;
    UniqueFd stdin_, stdout_, stderr_;
};

NsfdctlRun::Result nsfdctlAs(const std::vector<std::string>& args,
                             NsfdctlRun::Options options = {}) {
    return NsfdctlRun(args, std::move(options)).finish();
}

// A root process in fresh net, uts and ipc namespaces: hostname
// nsfd-spawn-target, a bridge nsfdspawn0, lo up.
Child spawnTarget() {
    return Child::spawn(
        [] {
            if (::sethostname("nsfd-spawn-target", 17) < 0) {
                return errno;
            }
            if (std::system("ip link add nsfdspawn0 type bridge && ip link set lo up") != 0) {
                return EIO;
            }
            return 0;
        },
        Child::Options{CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC, 0});
}

// Waits until `pidfd`'s process has exited; false if it still runs after `limit`.
bool exitsWithin(int pidfd, std::chrono::milliseconds limit) {
    pollfd p{pidfd, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
}

UniqueFd pidfdOf(pid_t pid) {
    return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

// A Varlink connection to nsfdd that sends Spawn calls (with "more").
class SpawnConnection : public VarlinkConnection {
  public:
    using VarlinkConnection::VarlinkConnection;
    [[nodiscard]] bool spawn(const Json& parameters, const std::vector<int>& fds) {
        return send("org.nsfd1.Manager.Spawn", parameters, fds, true);
    }
};

// Spawn's parameters for `argv` in the net namespace of `pid`, stdio and the
// working directory as fds 0 to 3 of the call.
Json spawnParameters(pid_t pid, const std::vector<std::string>& argv,
                     const std::vector<std::string>& environment = {"PATH=/usr/bin:/bin"}) {
    return {{"pid", pid}, {"namespaces", {"net"}}, {"argv", argv}, {"environment", environment},
            {"stdin", 0}, {"stdout", 1},           {"stderr", 2},  {"workingDirectory", 3}};
}

// Processes of `uid` whose command line is `argv0 arg`: what a run left behind.
std::vector<pid_t> processesOf(uid_t uid, const std::string& commandLine) {
    std::vector<pid_t> out;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        std::string name = entry.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) {
            continue;
        }
        struct stat st {};
        std::string cmdline = readFile(entry.path() / "cmdline");
        std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
        if (::stat(entry.path().c_str(), &st) == 0 && st.st_uid == uid &&
            cmdline == commandLine + " ") {
            out.push_back(std::stoi(name));
        }
    }
    return out;
}

// A process's cgroup in the hierarchy that holds `controller`: its directory
// there, and whether that hierarchy is cgroup v2.
struct CgroupDir {
    std::string path;
    bool v2 = false;
};

bool listed(const std::string& list, const std::string& word, char separator) {
    std::istringstream in(list);
    for (std::string item; std::getline(in, item, separator);) {
        if (item == word) {
            return true;
        }
    }
    return false;
}

// From /proc/PID/cgroup and this process's mountinfo: a v1 hierarchy named
// after `controller`, or v2 where the cgroup lists it. nullopt: neither.
std::optional<CgroupDir> cgroupOf(pid_t pid, const std::string& controller) {
    std::ifstream mounts("/proc/self/mountinfo");
    std::vector<std::array<std::string, 4>> cgroupMounts;  // type, point, root, options
    for (std::string line; std::getline(mounts, line);) {
        std::size_t dash = line.find(" - ");
        if (dash == std::string::npos) {
            continue;
        }
        std::istringstream left(line.substr(0, dash)), right(line.substr(dash + 3));
        std::string skip, root, point, type, source, options;
        left >> skip >> skip >> skip >> root >> point;
        right >> type >> source >> options;
        if (type == "cgroup" || type == "cgroup2") {
            cgroupMounts.push_back({type, point, root, options});
        }
    }
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    for (std::string line; std::getline(in, line);) {
        std::size_t first = line.find(':'), second = line.find(':', first + 1);
        std::string names = line.substr(first + 1, second - first - 1);
        std::string path = line.substr(second + 1);
        for (const auto& [type, point, root, options] : cgroupMounts) {
            bool v2 = type == "cgroup2";
            if (root != "/" ||
                (v2 ? !names.empty()
                    : !listed(names, controller, ',') || !listed(options, controller, ','))) {
                continue;
            }
            std::string dir = point + (path == "/" ? "" : path);
            if (v2) {
                std::istringstream available(readFile(dir + "/cgroup.controllers"));
                std::string all;
                std::getline(available, all);
                if (!listed(all, controller, ' ')) {
                    continue;
                }
            }
            return CgroupDir{dir, v2};
        }
    }
    return std::nullopt;
}

// Empty where nsfdd by hand (a child of this test, in its cgroups) can give a
// run its own cgroup with both limits; else why not, for GTEST_SKIP.
std::string whyNoRunCgroup() {
    for (const char* controller : {"pids", "memory"}) {
        auto own = cgroupOf(::getpid(), controller);
        if (!own) {
            return std::string("no ") + controller + " controller for this test's cgroup";
        }
        if (::access(own->path.c_str(), W_OK) < 0) {
            return own->path + " is not writable: " + std::strerror(errno);
        }
        if (own->v2 && readFile("/proc/self/cgroup").find("0::/\n") == std::string::npos) {
            return "cgroup v2 and this test's cgroup is not the root: no internal processes "
                   "leaves a run by hand no limits there (README, Lifetime)";
        }
    }
    return "";
}

std::uint64_t numberIn(const std::string& file) {
    return std::stoull(readFile(file));
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

class SpawnTest : public DaemonTest {
  protected:
    std::string config() const override { return kEnterGrant; }
    std::string varlinkPath() const override { return socket_; }

    void SetUp() override {
        if (kUser == 0 || kOtherUser == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test-users)";
        }
        dir_.emplace();
        socket_ = dir_->socket();
        ::setenv("NSFD_VARLINK_SOCKET", socket_.c_str(), 1);  // nsfdctl's
        DaemonTest::SetUp();
        if (daemon_) {
            // Once nsfdd serves: a call answered.
            runAsUser(kUser, kUserGid, [&] {
                SpawnConnection call(socket_);
                ASSERT_TRUE(call.spawn(Json::object(), {}));
                call.receive();
            });
            // ... and has closed that connection: the count holds still.
            daemonFds_ = countFds(daemon_->pid());
            for (int still = 0; still < 10;) {
                std::this_thread::sleep_for(10ms);
                int now = countFds(daemon_->pid());
                still = now == daemonFds_ ? still + 1 : 0;
                daemonFds_ = now;
            }
        }
    }

    void TearDown() override {
        if (daemon_ && !HasFailure()) {
            // Every run ended: no helper left below nsfdd, no fd of a run kept.
            auto deadline = std::chrono::steady_clock::now() + 10s;
            while (!childrenOf(daemon_->pid()).empty() &&
                   std::chrono::steady_clock::now() < deadline) {
                std::this_thread::sleep_for(10ms);
            }
            EXPECT_EQ(childrenOf(daemon_->pid()).size(), 0U) << "a helper outlived its run";
            // Connections the test closed are closed by nsfdd on its next turns.
            while (countFds(daemon_->pid()) != daemonFds_ &&
                   std::chrono::steady_clock::now() < deadline) {
                std::this_thread::sleep_for(10ms);
            }
            EXPECT_EQ(countFds(daemon_->pid()), daemonFds_) << "nsfdd kept an fd of a run";
        }
        DaemonTest::TearDown();
        ::setenv("NSFD_VARLINK_SOCKET", kNoVarlinkSocket, 1);
        dir_.reset();
    }

    // A run nsfd-test-a started over a Varlink connection of its own.
    struct StartedRun {
        std::unique_ptr<SpawnConnection> call;  // used from here on, by any thread
        pid_t pid = 0;                          // the command's
        UniqueFd command;                       // its pidfd
    };
    // Runs `argv` in the net namespace of `target` as nsfd-test-a, its stdout
    // `out` (/dev/null without one); returns once the command runs. Throws
    // std::runtime_error if nsfdd did not start it.
    StartedRun startRun(pid_t target, const std::vector<std::string>& argv, int out = -1) {
        UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
        UniqueFd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
        StartedRun run;
        runAsUser(kUser, kUserGid, [&] { run.call = std::make_unique<SpawnConnection>(socket_); });
        if (!run.call->spawn(spawnParameters(target, argv),
                             {null.get(), out >= 0 ? out : null.get(), null.get(), root.get()})) {
            throw std::runtime_error("nsfdd hung up before Spawn was sent");
        }
        auto [first, fds] = run.call->receive();
        if (fds.size() != 1) {
            throw std::runtime_error("Spawn did not start the command: " + first.dump());
        }
        run.pid = first["parameters"]["pid"].get<pid_t>();
        run.command = std::move(fds[0]);
        return run;
    }

    std::optional<SocketDir> dir_;
    std::string socket_;
    int daemonFds_ = 0;
};

TEST_F(SpawnTest, AGrantedUserSeesTheTargetsLinksAndHostname) {
    Child target = spawnTarget();
    std::string pid = std::to_string(target.pid());
    auto result = nsfdctlAs(
        {"exec", pid, "--net", "--uts", "--", "sh", "-c", "hostname; ip -br link | cut -d' ' -f1"});
    ASSERT_EQ(result.exitCode, 0) << result.err;
    std::vector<std::string> lines = linesOf(result.out);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines[0], "nsfd-spawn-target");
    std::set<std::string> links(lines.begin() + 1, lines.end());
    EXPECT_EQ(links, linksOf(target.pid()));
    EXPECT_EQ(links.count("nsfdspawn0"), 1U);
}

TEST_F(SpawnTest, TheCommandIsExactlyTheCallerWithoutCapabilities) {
    Child target = spawnTarget();
    gid_t extra = kOtherGid;
    NsfdctlRun::Options options;
    options.groups = {kUserGid, extra};
    auto result = nsfdctlAs(
        {"exec", std::to_string(target.pid()), "--net", "--", "cat", "/proc/self/status"}, options);
    ASSERT_EQ(result.exitCode, 0) << result.err;
    auto fields = statusFields(result.out);
    std::string uid = std::to_string(kUser), gid = std::to_string(kUserGid);
    EXPECT_EQ(fields["Uid"], uid + "\t" + uid + "\t" + uid + "\t" + uid);
    EXPECT_EQ(fields["Gid"], gid + "\t" + gid + "\t" + gid + "\t" + gid);
    std::set<std::string> groups;
    std::istringstream words(fields["Groups"]);
    for (std::string word; words >> word;) {
        groups.insert(word);
    }
    EXPECT_EQ(groups, (std::set<std::string>{gid, std::to_string(extra)}));
    for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
        EXPECT_EQ(std::stoull(fields[set], nullptr, 16), 0U) << set;
    }
    EXPECT_EQ(fields["NoNewPrivs"], "1");
}

TEST_F(SpawnTest, TheCommandSeesTheCallersDirectoryAndPrivateMounts) {
    Child target = spawnTarget();
    // A tmpfs with a marker file, mounted only in the caller's own mount
    // namespace; the caller works there.
    NsfdctlRun::Options options;
    options.prepare = [] {
        if (::unshare(CLONE_NEWNS) < 0 ||
            ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
            ::mount("tmpfs", "/mnt", "tmpfs", 0, "mode=0777") < 0) {
            return errno;
        }
        int fd = ::open("/mnt/only-here", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0 || ::write(fd, "private\n", 8) != 8 || ::close(fd) < 0 ||
            ::mkdir("/mnt/work", 0777) < 0 || ::chdir("/mnt/work") < 0) {
            return errno;
        }
        return 0;
    };
    auto result = nsfdctlAs(
        {"exec", std::to_string(target.pid()), "--net", "--", "sh", "-c", "pwd; cat ../only-here"},
        options);
    ASSERT_EQ(result.exitCode, 0) << result.err;
    EXPECT_EQ(linesOf(result.out), (std::vector<std::string>{"/mnt/work", "private"}));
    struct stat st {};
    EXPECT_NE(::stat("/mnt/only-here", &st), 0) << "the marker leaked into the test's namespace";
}

TEST_F(SpawnTest, StdioPassesThroughAndTheExitStatusComesBack) {
    Child target = spawnTarget();
    NsfdctlRun::Options options;
    options.input = "from stdin\n";
    auto result = nsfdctlAs({"exec", std::to_string(target.pid()), "--ipc", "--", "sh", "-c",
                             "read line; echo \"out: $line\"; echo 'to stderr' >&2; exit 7"},
                            options);
    EXPECT_EQ(result.exitCode, 7);
    EXPECT_EQ(result.out, "out: from stdin\n");
    EXPECT_EQ(result.err, "to stderr\n");
    // As a shell: 127 for a command not found, 126 for one not executable.
    EXPECT_EQ(nsfdctlAs({"exec", std::to_string(target.pid()), "--net", "--", "no-such-command"})
                  .exitCode,
              127);
    EXPECT_EQ(
        nsfdctlAs({"exec", std::to_string(target.pid()), "--net", "--", "/etc/hostname"}).exitCode,
        126);
}

TEST_F(SpawnTest, SigtermToNsfdctlReachesTheCommand) {
    Child target = spawnTarget();
    // One script, its lines joined on purpose.
    // NOLINTBEGIN(bugprone-suspicious-missing-comma)
    NsfdctlRun run({"exec", std::to_string(target.pid()), "--net", "--", "sh", "-c",
                    "trap 'echo got TERM; exit 3' TERM; echo ready; "
                    "while :; do sleep 0.05; done"},
                   {});
    // NOLINTEND(bugprone-suspicious-missing-comma)
    ASSERT_EQ(readLine(run.out()), "ready");
    ASSERT_EQ(::kill(run.pid(), SIGTERM), 0);
    auto result = run.finish();
    EXPECT_EQ(result.exitCode, 3) << result.err;
    EXPECT_EQ(result.out, "got TERM\n");
}

TEST_F(SpawnTest, SigkillOfNsfdctlEndsEverythingTheCommandStarted) {
    Child target = spawnTarget();
    NsfdctlRun run({"exec", std::to_string(target.pid()), "--net", "--", "sh", "-c",
                    "sleep 1000 & echo $$ $!; wait"},
                   {});
    std::istringstream pids(readLine(run.out()));
    pid_t shell = 0, sleeper = 0;
    pids >> shell >> sleeper;
    ASSERT_GT(shell, 0);
    ASSERT_GT(sleeper, 0);
    UniqueFd shellFd = pidfdOf(shell), sleeperFd = pidfdOf(sleeper);
    ASSERT_TRUE(shellFd.ok() && sleeperFd.ok());
    EXPECT_FALSE(exitsWithin(sleeperFd.get(), 0ms));
    ASSERT_EQ(::kill(run.pid(), SIGKILL), 0);
    run.finish();
    EXPECT_TRUE(exitsWithin(shellFd.get(), 1000ms)) << "the command outlived nsfdctl";
    EXPECT_TRUE(exitsWithin(sleeperFd.get(), 1000ms)) << "the command's child outlived nsfdctl";
}

TEST_F(SpawnTest, AUserWithoutAGrantGetsExit4AndNothingRuns) {
    Child target = spawnTarget();
    std::string marker = dir_->path() + "/ran";
    NsfdctlRun::Options other;
    other.uid = kOtherUser;
    other.gid = kOtherGid;
    ::chmod(dir_->path().c_str(), 0777);
    auto result =
        nsfdctlAs({"exec", std::to_string(target.pid()), "--net", "--", "touch", marker}, other);
    ::chmod(dir_->path().c_str(), 0755);
    EXPECT_EQ(result.exitCode, 4) << result.err;
    EXPECT_NE(result.err.find("Access denied"), std::string::npos) << result.err;
    struct stat st {};
    EXPECT_NE(::stat(marker.c_str(), &st), 0) << "the command ran";
}

TEST_F(SpawnTest, MntIsRefusedForANonRootCallerNamingWhatABrokeredRunEnters) {
    Child target = spawnTarget();
    auto result = nsfdctlAs({"exec", std::to_string(target.pid()), "--net", "--mnt", "--", "true"});
    EXPECT_EQ(result.exitCode, 4);
    EXPECT_NE(result.err.find("mnt"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find("net, uts and ipc"), std::string::npos) << result.err;
    // -S 0: a brokered run is the caller, never another user.
    auto other = nsfdctlAs({"exec", "-S", "0", std::to_string(target.pid()), "--net", "--", "id"});
    EXPECT_EQ(other.exitCode, 2) << other.err;
}

TEST_F(SpawnTest, BadInputGetsNamedErrorsAndLosesNothing) {
    Child target = spawnTarget();
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    UniqueFd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    std::vector<int> fds{null.get(), null.get(), null.get(), root.get()};
    auto callOnce = [&](const Json& parameters, const std::vector<int>& with) {
        Json reply;
        runAsUser(kUser, kUserGid, [&] {
            SpawnConnection call(socket_);
            ASSERT_TRUE(call.spawn(parameters, with));
            reply = call.receive().first;
        });
        return reply;
    };
    pid_t pid = target.pid();
    Json empty = callOnce(spawnParameters(pid, {}), fds);
    EXPECT_EQ(errorOf(empty), "InvalidArgument") << empty;
    EXPECT_EQ(empty["parameters"]["parameter"], "argv");
    Json mnt = spawnParameters(pid, {"true"});
    mnt["namespaces"] = {"net", "mnt"};
    Json refused = callOnce(mnt, fds);
    EXPECT_EQ(errorOf(refused), "InvalidArgument") << refused;
    EXPECT_EQ(refused["parameters"]["parameter"], "namespaces");
    // stdio "closed": an index no fd came for.
    Json closed = callOnce(spawnParameters(pid, {"true"}), {null.get(), null.get()});
    EXPECT_EQ(errorOf(closed), "InvalidArgument") << closed;
    EXPECT_EQ(closed["parameters"]["parameter"], "stderr");
    // 40 KiB of environment runs; 50 KiB is past Spawn's bound, a named error.
    std::vector<std::string> big{"PATH=/usr/bin:/bin", "BIG=" + std::string(40 * 1024, 'x')};
    Json started = callOnce(spawnParameters(pid, {"true"}, big), fds);
    EXPECT_EQ(started.value("continues", false), true) << started;
    big[1] = "BIG=" + std::string(50 * 1024, 'x');
    Json tooBig = callOnce(spawnParameters(pid, {"true"}, big), fds);
    EXPECT_EQ(errorOf(tooBig), "LimitExceeded") << tooBig;
    // 1 MiB of environment through libnsfd-client: refused before it is sent.
    runAsUser(kUser, kUserGid, [&] {
        Client client = Client::varlink(socket_);
        SpawnOptions options;
        options.namespaces = {NsType::Net};
        options.argv = {"true"};
        options.environment = {"BIG=" + std::string(1024 * 1024, 'x')};
        EXPECT_THROW(client.spawn(pid, options), LimitExceeded);
    });
    // 1,000 argv entries, and a socket as stdout.
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    UniqueFd ours(pair[0]), theirs(pair[1]);
    std::vector<std::string> argv{"sh", "-c", "echo $#", "sh"};
    for (int i = 0; i < 997; ++i) {
        argv.push_back("a" + std::to_string(i));
    }
    ASSERT_EQ(argv.size(), 1001U);
    Json last;
    runAsUser(kUser, kUserGid, [&] {
        SpawnConnection call(socket_);
        ASSERT_TRUE(call.spawn(spawnParameters(pid, argv),
                               {null.get(), theirs.get(), null.get(), root.get()}));
        Json first = call.receive().first;
        EXPECT_EQ(first.value("continues", false), true) << first;
        last = call.receive().first;
    });
    theirs.reset();
    EXPECT_EQ(last["parameters"]["waitStatus"], 0) << last;
    EXPECT_EQ(readAll(ours.get()), "997\n");
}

TEST_F(SpawnTest, ATargetThatExitedIsNamedSoAndNothingRuns) {
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    UniqueFd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    Child target = spawnTarget();
    UniqueFd pidfd = pidfdOf(target.pid());
    target.release(0);
    target.awaitExit();  // a zombie: its pid still names it, its namespaces are gone
    Json zombie;
    runAsUser(kUser, kUserGid, [&] {
        SpawnConnection call(socket_);
        Json parameters = spawnParameters(0, {"true"});
        parameters.erase("pid");
        parameters["pidfd"] = 4;
        ASSERT_TRUE(
            call.spawn(parameters, {null.get(), null.get(), null.get(), root.get(), pidfd.get()}));
        zombie = call.receive().first;
    });
    EXPECT_EQ(errorOf(zombie), "ProcessExited") << zombie;
    pid_t pid = target.pid();
    target.reap();
    Json gone;
    runAsUser(kUser, kUserGid, [&] {
        SpawnConnection call(socket_);
        ASSERT_TRUE(call.spawn(spawnParameters(pid, {"true"}),
                               {null.get(), null.get(), null.get(), root.get()}));
        gone = call.receive().first;
    });
    EXPECT_EQ(errorOf(gone), "NoSuchProcess") << gone;
}

TEST_F(SpawnTest, TheHelperKilledMidRunKillsTheCommandAndTheCallerHearsIt) {
    Child target = spawnTarget();
    StartedRun run = startRun(target.pid(), {"sleep", "1000"});
    std::vector<pid_t> helpers = childrenOf(daemon_->pid());
    ASSERT_EQ(helpers.size(), 1U);
    ASSERT_EQ(::kill(helpers[0], SIGKILL), 0);
    EXPECT_TRUE(exitsWithin(run.command.get(), 1000ms)) << "the command outlived its helper";
    Json last = run.call->receive().first;
    EXPECT_EQ(errorOf(last), "Failed") << last;
    EXPECT_NE(last["parameters"]["message"].get<std::string>().find("killed"), std::string::npos)
        << last;
}

TEST_F(SpawnTest, TheCallerGoneAtOnceLeavesNothingRunning) {
    Child target = spawnTarget();
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    UniqueFd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    // Hung up right after the call, and after the first reply.
    for (bool waitForStart : {false, true}) {
        runAsUser(kUser, kUserGid, [&] {
            SpawnConnection call(socket_);
            ASSERT_TRUE(call.spawn(spawnParameters(target.pid(), {"sleep", "987"}),
                                   {null.get(), null.get(), null.get(), root.get()}));
            if (waitForStart) {
                EXPECT_EQ(call.receive().first.value("continues", false), true);
            }
            call.close();
        });
        auto deadline = std::chrono::steady_clock::now() + 2s;
        while (!processesOf(kUser, "sleep 987").empty() &&
               std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(20ms);
        }
        EXPECT_TRUE(processesOf(kUser, "sleep 987").empty()) << "waitForStart " << waitForStart;
    }
}

TEST_F(SpawnTest, RunsAreBoundedPerUidWithANamedError) {
    Child target = spawnTarget();
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    UniqueFd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    std::vector<int> fds{null.get(), null.get(), null.get(), root.get()};
    runAsUser(kUser, kUserGid, [&] {
        std::vector<std::unique_ptr<SpawnConnection>> running;
        for (std::size_t i = 0; i < spawn_limit::kRunsPerUid; ++i) {
            running.push_back(std::make_unique<SpawnConnection>(socket_));
            ASSERT_TRUE(
                running.back()->spawn(spawnParameters(target.pid(), {"sleep", "986"}), fds));
            ASSERT_EQ(running.back()->receive().first.value("continues", false), true) << i;
        }
        SpawnConnection more(socket_);
        ASSERT_TRUE(more.spawn(spawnParameters(target.pid(), {"sleep", "986"}), fds));
        Json refused = more.receive().first;
        EXPECT_EQ(errorOf(refused), "LimitExceeded") << refused;
    });
    // Another user is not held up by this one's bound.
    runAsUser(kOtherUser, kOtherGid, [&] {
        SpawnConnection other(socket_);
        ASSERT_TRUE(other.spawn(spawnParameters(target.pid(), {"true"}), fds));
        EXPECT_EQ(errorOf(other.receive().first), "AccessDenied");
    });
}

TEST_F(SpawnTest, NsfddStoppedMidRunEndsTheCommandAndTheCallerSeesTheHangUp) {
    Child target = spawnTarget();
    NsfdctlRun run({"exec", std::to_string(target.pid()), "--net", "--", "sh", "-c",
                    "sleep 1000 & echo $$ $!; wait"},
                   {});
    std::istringstream pids(readLine(run.out()));
    pid_t shell = 0, sleeper = 0;
    pids >> shell >> sleeper;
    UniqueFd shellFd = pidfdOf(shell), sleeperFd = pidfdOf(sleeper);
    ASSERT_TRUE(shellFd.ok() && sleeperFd.ok());
    int status = daemon_->stop();
    daemon_.reset();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    EXPECT_TRUE(exitsWithin(shellFd.get(), 1000ms)) << "the command outlived nsfdd";
    EXPECT_TRUE(exitsWithin(sleeperFd.get(), 1000ms)) << "the command's child outlived nsfdd";
    if (!exitsWithin(sleeperFd.get(), 0ms)) {
        ::kill(sleeper, SIGKILL);  // it holds nsfdctl's stdout: finish() would wait for it
    }
    auto result = run.finish();
    // DaemonUnavailable: nsfdd's connection closed (before or after nsfdctl
    // read that the command started, which the command's output may precede).
    EXPECT_EQ(result.exitCode, 3) << result.err;
    EXPECT_NE(result.err.find("connection to nsfdd closed"), std::string::npos) << result.err;
}

// By hand (no nsfd-run@.service): the run's own cgroup below nsfdd's, in each
// hierarchy, with the unit's limits, gone by the time the caller hears the end.
TEST_F(SpawnTest, ARunByHandHasACgroupOfItsOwnWithTheUnitsLimits) {
    if (std::string why = whyNoRunCgroup(); !why.empty()) {
        GTEST_SKIP() << why;
    }
    Child target = spawnTarget();
    NsfdctlRun run({"exec", std::to_string(target.pid()), "--net", "--", "sh", "-c",
                    "sleep 1000 & echo $$ $!; wait"},
                   {});
    std::istringstream pids(readLine(run.out()));
    pid_t shell = 0, sleeper = 0;
    pids >> shell >> sleeper;
    ASSERT_GT(sleeper, 0);
    std::vector<pid_t> helpers = childrenOf(daemon_->pid());
    ASSERT_EQ(helpers.size(), 1U);
    std::vector<std::string> dirs;
    for (const char* controller : {"pids", "memory"}) {
        auto daemon = cgroupOf(daemon_->pid(), controller);
        auto command = cgroupOf(shell, controller);
        auto child = cgroupOf(sleeper, controller);
        ASSERT_TRUE(daemon && command && child) << controller;
        EXPECT_EQ(command->path, daemon->path + "/" + helper::kRunsCgroup + "/" +
                                     helper::kRunCgroupPrefix + std::to_string(helpers[0]))
            << controller;
        EXPECT_EQ(child->path, command->path) << controller;
        dirs.push_back(command->path);
    }
    auto tasks = cgroupOf(shell, "pids");
    auto memory = cgroupOf(shell, "memory");
    EXPECT_EQ(numberIn(tasks->path + "/pids.max"), helper::kRunTasksMax);
    EXPECT_EQ(numberIn(tasks->path + "/pids.current"), 2U) << "sh and sleep, nothing else";
    EXPECT_EQ(numberIn(memory->path + (memory->v2 ? "/memory.max" : "/memory.limit_in_bytes")),
              helper::kRunMemoryMaxBytes);
    ASSERT_EQ(::kill(run.pid(), SIGTERM), 0);  // to sh; the helper kills sleep
    auto result = run.finish();
    EXPECT_EQ(result.exitCode, 128 + SIGTERM) << result.err;
    for (const std::string& dir : dirs) {
        EXPECT_FALSE(exists(dir)) << dir << " outlived the run";
    }
}

TEST_F(SpawnTest, ARunByHandForksNoFurtherThanItsTaskLimit) {
    if (std::string why = whyNoRunCgroup(); !why.empty()) {
        GTEST_SKIP() << why;
    }
    Child target = spawnTarget();
    // Far past the limit, so that a run without it shows as 2000 forks.
    auto result = nsfdctlAs({"exec", std::to_string(target.pid()), "--net", "--",
                             NSFD_TEST_FORK_UNTIL_REFUSED, "2000"});
    ASSERT_EQ(result.exitCode, 0) << result.err;
    std::istringstream in(result.out);
    std::uint64_t forked = 0;
    int error = 0;
    ASSERT_TRUE(in >> forked >> error) << result.out;
    EXPECT_EQ(forked, helper::kRunTasksMax - 1) << "the command itself is the first task";
    EXPECT_EQ(error, EAGAIN);
}

TEST_F(SpawnTest, ARunsCgroupIsGoneAfterItsCallerIsKilled) {
    if (std::string why = whyNoRunCgroup(); !why.empty()) {
        GTEST_SKIP() << why;
    }
    Child target = spawnTarget();
    NsfdctlRun run({"exec", std::to_string(target.pid()), "--net", "--", "sh", "-c",
                    "sleep 1000 & echo $$; wait"},
                   {});
    pid_t shell = std::stoi(readLine(run.out()));
    std::vector<std::string> dirs;
    for (const char* controller : {"pids", "memory"}) {
        auto command = cgroupOf(shell, controller);
        ASSERT_TRUE(command) << controller;
        ASSERT_TRUE(exists(command->path));
        dirs.push_back(command->path);
    }
    ASSERT_EQ(::kill(run.pid(), SIGKILL), 0);
    run.finish();
    auto deadline = std::chrono::steady_clock::now() + 2s;
    auto anyLeft = [&] { return std::any_of(dirs.begin(), dirs.end(), exists); };
    while (anyLeft() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    for (const std::string& dir : dirs) {
        EXPECT_FALSE(exists(dir)) << dir << " outlived the run";
    }
}

// A helper killed mid-run removes nothing; the next run removes what it left.
TEST_F(SpawnTest, ACgroupLeftByAKilledHelperGoesWithTheNextRun) {
    if (std::string why = whyNoRunCgroup(); !why.empty()) {
        GTEST_SKIP() << why;
    }
    Child target = spawnTarget();
    StartedRun run = startRun(target.pid(), {"sleep", "1000"});
    auto left = cgroupOf(run.pid, "pids");
    ASSERT_TRUE(left);
    std::vector<pid_t> helpers = childrenOf(daemon_->pid());
    ASSERT_EQ(helpers.size(), 1U);
    ASSERT_EQ(::kill(helpers[0], SIGKILL), 0);
    ASSERT_TRUE(exitsWithin(run.command.get(), 1000ms));
    run.call->receive();
    EXPECT_TRUE(exists(left->path)) << "the killed helper's cgroup: nobody removed it yet";
    auto next = nsfdctlAs({"exec", std::to_string(target.pid()), "--net", "--", "true"});
    EXPECT_EQ(next.exitCode, 0) << next.err;
    EXPECT_FALSE(exists(left->path)) << "the next run did not remove it";
}

// nsfdd by hand where no cgroup can be made: /sys/fs/cgroup hidden by a tmpfs
// in a mount namespace of its own (made by the thread that starts it).
class SpawnWithoutCgroupsTest : public SpawnTest {
  protected:
    void SetUp() override {
        int error = 0;
        std::thread([&] {
            if (::unshare(CLONE_NEWNS) < 0 ||
                ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
                ::mount("tmpfs", "/sys/fs/cgroup", "tmpfs", 0, "mode=0755") < 0) {
                error = errno;
                return;
            }
            SpawnTest::SetUp();
        }).join();
        ASSERT_EQ(error, 0) << "Failed to hide /sys/fs/cgroup: " << std::strerror(error);
    }
};

TEST_F(SpawnWithoutCgroupsTest, ARunByHandWithoutCgroupsGoesOnAndSaysSoInOneLine) {
    Child target = spawnTarget();
    auto result =
        nsfdctlAs({"exec", std::to_string(target.pid()), "--net", "--", "sh", "-c", "exit 7"});
    EXPECT_EQ(result.exitCode, 7) << result.err;
    std::vector<std::string> warnings;
    for (const std::string& line : linesOf(daemon_->log())) {
        if (line.find("runs with limits missing") != std::string::npos) {
            warnings.push_back(line);
        }
    }
    ASSERT_EQ(warnings.size(), 1U) << daemon_->log();
    EXPECT_EQ(warnings[0].rfind("nsfd-helper: sh runs with limits missing: ", 0), 0U)
        << warnings[0];
    EXPECT_NE(warnings[0].find("no task limit"), std::string::npos) << warnings[0];
    EXPECT_NE(warnings[0].find("no memory limit"), std::string::npos) << warnings[0];
}

// The numbers a helper by hand writes are those of nsfd-run@.service.
TEST(SpawnLimits, TheRunUnitHasTheLimitsOfARunByHand) {
    std::map<std::string, std::string> settings;
    for (const std::string& line :
         linesOf(readFile(std::string(NSFD_TEST_SOURCE_DIR) + "/systemd/nsfd-run@.service"))) {
        if (std::size_t equals = line.find('='); equals != std::string::npos && line[0] != '#') {
            settings[line.substr(0, equals)] = line.substr(equals + 1);
        }
    }
    EXPECT_EQ(std::stoull(settings["TasksMax"]), helper::kRunTasksMax);
    ASSERT_FALSE(settings["MemoryMax"].empty());
    EXPECT_EQ(settings["MemoryMax"].back(), 'G');
    EXPECT_EQ(std::stoull(settings["MemoryMax"]) << 30, helper::kRunMemoryMaxBytes);
}

}  // namespace
}  // namespace nsfd::test

namespace nsfd::test {
namespace {

// The egid of `pid` (the second field of Gid: in /proc/PID/status), -1 if unknown.
long egidOf(pid_t pid) {
    std::map<std::string, std::string> fields =
        statusFields(readFile("/proc/" + std::to_string(pid) + "/status"));
    std::istringstream gids(fields["Gid"]);
    long real = -1, effective = -1;
    gids >> real >> effective;
    return effective;
}

// The state letter of /proc/PID/stat ('Z' for a zombie), '?' if it is gone.
char stateOf(pid_t pid) {
    std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
    std::size_t close = stat.rfind(')');
    return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

// The helper is the subreaper of what the command starts: the command's
// orphans that exit are reaped while it runs, not left as zombies that count
// against the run's task limit until it ends.
TEST_F(SpawnTest, TheCommandsOrphansAreReapedWhileItRuns) {
    Child target = spawnTarget();
    int pipe[2];
    ASSERT_EQ(::pipe2(pipe, O_CLOEXEC), 0);
    UniqueFd outRead(pipe[0]), outWrite(pipe[1]);
    // Ten subshells that each leave an orphan behind, then a long sleep.
    StartedRun run = startRun(target.pid(),
                              {"sh", "-c",
                               "for i in 1 2 3 4 5 6 7 8 9 10; do (true &); done; "
                               "echo started; exec sleep 995"},
                              outWrite.get());
    outWrite.reset();
    ASSERT_EQ(readLine(outRead.get()), "started");
    std::vector<pid_t> helpers = childrenOf(daemon_->pid());
    ASSERT_EQ(helpers.size(), 1U);
    auto zombies = [&] {
        std::vector<pid_t> children = childrenOf(helpers[0]);
        return std::count_if(children.begin(), children.end(),
                             [](pid_t child) { return stateOf(child) == 'Z'; });
    };
    for (int i = 0; i < 200 && zombies() > 0; ++i) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(zombies(), 0) << "orphans left unreaped while the command runs";
    EXPECT_EQ(childrenOf(helpers[0]).size(), 1U) << "the command (sleep) alone";
    run.call->close();  // the run ends with the connection
}

// A connection keeps the identity it was made with. Its process exec'ing a
// setgid program afterwards, while a child of it keeps the connection, lends
// the child nothing of that group: nsfdd acts with SO_PEERCRED's gid, and
// reads the process only while it still has that identity.
TEST_F(SpawnTest, AConnectionWhoseProcessExecsASetgidProgramLendsItsChildNoGroup) {
    // sleep, setgid nsfd-test-b: what a setgid program of another group does to the egid.
    std::string setgidSleep = dir_->path() + "/setgid-sleep";
    ASSERT_TRUE(std::filesystem::copy_file("/bin/sleep", setgidSleep));
    ASSERT_EQ(::chown(setgidSleep.c_str(), 0, kOtherGid), 0);
    ASSERT_EQ(::chmod(setgidSleep.c_str(), 02755), 0);
    std::string socket = socket_;
    auto [status, text] = forkAndRead(
        [&](int result) {
            // nsfd-test-a, without supplementary groups, connects.
            if (::setgroups(0, nullptr) < 0 || ::setresgid(kUserGid, kUserGid, kUserGid) < 0 ||
                ::setresuid(kUser, kUser, kUser) < 0) {
                ::_exit(120);
            }
            std::optional<SpawnConnection> connection;
            try {
                connection.emplace(socket);
            } catch (const std::exception&) {
                ::_exit(121);
            }
            pid_t connected = ::getpid();
            pid_t child = ::fork();
            if (child < 0) {
                ::_exit(122);
            }
            if (child > 0) {  // the connection's process: now egid nsfd-test-b
                ::execl(setgidSleep.c_str(), "sleep", "30", nullptr);
                ::_exit(123);
            }
            for (int i = 0; i < 500 && egidOf(connected) != static_cast<long>(kOtherGid); ++i) {
                std::this_thread::sleep_for(10ms);
            }
            std::string said = "the setgid program did not run";
            int pipe[2];
            UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
            UniqueFd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
            if (egidOf(connected) == static_cast<long>(kOtherGid) &&
                ::pipe2(pipe, O_CLOEXEC) == 0) {
                UniqueFd outRead(pipe[0]), outWrite(pipe[1]);
                // The target by pidfd: no raw pid to be refused for.
                UniqueFd self = pidfdOf(::getpid());
                Json parameters = spawnParameters(0, {"id", "-G"});
                parameters.erase("pid");
                parameters["pidfd"] = 4;
                bool sent = connection->spawn(
                    parameters, {null.get(), outWrite.get(), null.get(), root.get(), self.get()});
                outWrite.reset();
                auto reply = sent ? connection->next(10s) : std::nullopt;
                if (!reply) {
                    said = "no answer";
                } else if (!errorOf(reply->first).empty()) {
                    said = "error " + errorOf(reply->first);
                } else {
                    said = "groups " + readAll(outRead.get());
                }
            }
            (void)!::write(result, said.data(), said.size());
            ::kill(connected, SIGKILL);
            ::_exit(0);
        },
        "a caller whose connection's process exec'd a setgid program");
    ASSERT_TRUE(WIFSIGNALED(status)) << status;  // the setgid sleep, killed
    // The command runs as the connection was made: nsfd-test-a's gid alone.
    // Before, it ran with nsfd-test-b's, the setgid program's group.
    EXPECT_EQ(text, "groups " + std::to_string(kUserGid) + "\n");
}

}  // namespace
}  // namespace nsfd::test
