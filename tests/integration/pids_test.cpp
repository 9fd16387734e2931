// SPDX-License-Identifier: LGPL-2.1-or-later
// Pids between callers and nsfdd, the three kinds of case from the field:
// a pid seen from another pid namespace, a pid reused, a process that exits
// while a call is decided.
//
// A pid means what it means to the one who wrote it: a caller in another pid
// namespace than nsfdd's (unshare --pid, as flatpak apps and containers that
// mount the host's bus socket are) never acts on, or learns the pid of, a
// process it did not mean. nsfdctl and libnsfd-client pass pidfds opened in
// the caller's namespace; raw pid arguments from such a caller are refused
// (ForeignPidNamespace); pids shown to it are 0.
#include <sys/syscall.h>
#include <sys/wait.h>

#include <chrono>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

class PidNamespaceTest : public DaemonTest {
  protected:
    // Runs `script` with sh as root in a new pid namespace (and mount
    // namespace, with its own /proc): {wait status, stdout and stderr}.
    std::pair<int, std::string> inNewPidNamespace(const std::string& script) {
        return forkAndRead([&](int fd) {
            ::dup2(fd, STDOUT_FILENO);
            ::dup2(fd, STDERR_FILENO);
            ::setenv("NSFDCTL", NSFD_TEST_NSFDCTL, 1);
            ::execlp("unshare", "unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
                     script.c_str(), nullptr);
            ::_exit(127);
        });
    }
};

TEST_F(PidNamespaceTest, ACallerInAnotherPidNamespaceActsOnlyOnTheProcessItMeant) {
    // Inside, pid 2 is our sleep; outside, pid 2 is kthreadd. The sleep's pidfs
    // id, from a pidfd opened inside, tells which process nsfd acted on.
    auto [status, out] = inNewPidNamespace(R"sh(
sleep 100 & p=$!
id=$(python3 -c 'import os,sys; print(os.fstat(os.pidfd_open(int(sys.argv[1]))).st_ino)' $p)
echo "pid=$p"
echo "id=$id"
echo "track=$($NSFDCTL track $p)"
echo "info=$($NSFDCTL --json info $p)"
echo "raw=$(busctl call org.nsfd1 /org/nsfd1 org.nsfd1.Manager GetProcessInfo u $p 2>&1)"
echo "list=$(busctl call org.nsfd1 /org/nsfd1 org.nsfd1.Manager ListProcesses 2>&1)"
kill $p
)sh");
    ASSERT_EQ(status, 0) << out;
    // The value of the line "key=value". (A lambda may not capture a
    // structured binding before C++20's P1091, which clang 14 lacks.)
    const std::string& output = out;
    auto field = [&](const std::string& key) {
        std::istringstream lines(output);
        for (std::string line; std::getline(lines, line);) {
            if (line.rfind(key + "=", 0) == 0) {
                return line.substr(key.size() + 1);
            }
        }
        return std::string();
    };
    std::string pid = field("pid");
    std::string id = field("id");
    ASSERT_FALSE(id.empty()) << out;
    EXPECT_EQ(field("track"), "/org/nsfd1/process/" + id) << "tracked the process it meant:\n"
                                                          << out;
    nlohmann::json info = nlohmann::json::parse(field("info"));
    EXPECT_EQ(info.at("id"), std::stoull(id)) << out;
    EXPECT_EQ(info.at("pid"), std::stoi(pid)) << "its own pid, as it wrote it:\n" << out;
    EXPECT_NE(field("raw").find("pass a pidfd"), std::string::npos)
        << "a raw pid from another pid namespace is refused:\n"
        << out;
    EXPECT_EQ(field("list"), "a(uto) 1 0 " + id + " \"/org/nsfd1/process/" + id + "\"")
        << "it is shown no pid of nsfdd's namespace:\n"
        << out;
}

// -- a lookup by pid finds the process that has that pid now --

class PidReuseTest : public DaemonTest {
  protected:
    std::string config() const override { return "[limits]\nretention-seconds = 60\n"; }
};

TEST_F(PidReuseTest, ALookupByPidFindsTheProcessThatHasThatPidNow) {
    if (!kernelFeatures().exitInfo) {
        GTEST_SKIP() << "kernel lacks PIDFD_INFO_EXIT (6.15+)";
    }
    Child old = Child::spawn();
    pid_t pid = old.pid();
    std::string oldPath = manager_->TrackProcess(static_cast<uint32_t>(pid));
    auto oldProcess = process(oldPath);
    old.release(3);
    EXPECT_EQ(old.reap(), 3 << 8);
    ASSERT_TRUE(waitUntil([&] { return oldProcess->State() == "reaped"; }));

    // Nothing has the pid: the kept process answers, with its exit status.
    EXPECT_EQ(manager_->GetProcess(static_cast<uint32_t>(pid)), oldPath);
    auto [status, info] = run({NSFD_TEST_NSFDCTL, "--json", "info", std::to_string(pid)});
    EXPECT_EQ(status, 0) << info;
    nlohmann::json reaped = nlohmann::json::parse(info);
    EXPECT_EQ(reaped.at("exit_status"), 3 << 8) << info;
    EXPECT_EQ(reaped.at("state"), "reaped") << info;

    // The pid taken again, by an untracked process.
    Child reused = Child::spawn({}, {0, pid});
    ASSERT_EQ(reused.pid(), pid);
    EXPECT_EQ(errorNameOf([&] { manager_->GetProcess(static_cast<uint32_t>(pid)); }),
              err::kNotTracked)
        << "never the dead process by its old pid";
    EXPECT_EQ(oldProcess->ExitStatus(), 3 << 8) << "still found by its id";
    // nsfdctl acts on the live process, tracked or not.
    auto [signaled, out] = run({NSFD_TEST_NSFDCTL, "signal", std::to_string(pid), "TERM"});
    EXPECT_EQ(signaled, 0) << out;
    EXPECT_EQ(reused.reap(), SIGTERM);
}

// -- an exit racing a call is an exit, never a denial --

class ExitRaceTest : public DaemonTest {
  protected:
    void SetUp() override {
        if (kUser == 0) {
            GTEST_SKIP() << "user nsfd-test-a is missing (scripts/test-users)";
        }
        DaemonTest::SetUp();
    }
};

TEST_F(ExitRaceTest, AUsersOwnZombieIsProcessExitedForEveryMethodAndNoDenialIsLogged) {
    Child zombie = spawnAs(kUser);
    auto pid = static_cast<uint32_t>(zombie.pid());
    std::string path = manager_->TrackProcess(pid);
    zombie.release(0);
    zombie.awaitExit();
    std::string result = asUser(kUser, kUser, {}, [&](sdbus::IConnection& bus) {
        ManagerProxy manager(bus, false);
        ProcessProxy object(bus, path);
        std::string out;
        out += errorNameOf([&] { manager.GetNamespace(pid, "net"); }) + " ";
        out += errorNameOf([&] { manager.GetNamespaces(pid, {}); }) + " ";
        out += errorNameOf([&] { object.GetNamespace("net"); }) + " ";
        out += errorNameOf([&] { object.GetPidFd(); });
        return out;
    });
    std::string e = err::kProcessExited;
    EXPECT_EQ(result, e + " " + e + " " + e + " " + e);
    auto [status, out] = forkAndRead([&](int fd) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
        if (::setresgid(kUser, kUser, kUser) < 0 || ::setresuid(kUser, kUser, kUser) < 0) {
            ::_exit(127);
        }
        ::execl(NSFD_TEST_NSFDCTL, "nsfdctl", "ns", std::to_string(pid).c_str(), "net", nullptr);
        ::_exit(127);
    });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 5) << status << ": " << out;
    EXPECT_EQ(daemon_->log().find("Denied"), std::string::npos) << daemon_->log();
    zombie.reap();
}

TEST_F(ExitRaceTest, AProcessWhoseMainThreadExitedSaysSoAndIsNotDenied) {
    // The leader calls pthread_exit() (here: the exit syscall of one thread)
    // while another thread runs on: the kernel gives no namespaces of it.
    int ready[2];
    ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
    pid_t pid = forkProcess();
    if (pid == 0) {
        std::thread([] {
            for (;;) {
                ::pause();
            }
        }).detach();
        (void)!::write(ready[1], "r", 1);
        ::syscall(SYS_exit, 0);
    }
    ::close(ready[1]);
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
    // The leader is a zombie thread now (its /proc/PID/status says Z).
    for (int i = 0;
         i < 200 && readFile("/proc/" + std::to_string(pid) + "/status").find("State:\tZ") ==
                        std::string::npos;
         ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::string message;
    try {
        manager_->GetNamespace(static_cast<uint32_t>(pid), "net");
    } catch (const sdbus::Error& e) {
        EXPECT_EQ(e.getName(), err::kProcessExited);
        message = e.getMessage();
    }
    EXPECT_NE(message.find("main thread"), std::string::npos) << message;
    ::kill(pid, SIGKILL);
    reapWithin(pid, "the process whose main thread exited");
}

}  // namespace
}  // namespace nsfd::test
