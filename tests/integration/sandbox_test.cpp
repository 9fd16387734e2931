// SPDX-License-Identifier: LGPL-2.1-or-later
// A caller in a sandbox of its user (a user and a pid namespace of its own, as
// a rootless container, flatpak or bwrap make) keeps what the kernel gives it
// inside: its own processes, by pidfd and id, on both doors; and, as the
// kernel, nsfd does not let it kill its own namespace's init. What it may not
// reach outside: authorization_table_test.cpp and varlink_test.cpp. A D-Bus
// connection handed to another pid namespace is taken as from a foreign one.
#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>

#include <csignal>
#include <thread>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

constexpr const char* kCheck = NSFD_TEST_SOURCE_DIR "/tests/varlink/nsfd_check.py";

// The same lines from both doors (nsfd_check.py sandbox prints them too).
constexpr const char* kInsideExpected = R"(track by pidfd: ok
raw pid: ForeignPidNamespace
listed: ok
info by id: ok
mnt namespace by id: ok
pidfd by id: ok
SIGTERM by id: ok
reaped by: 15
track init: ok
SIGKILL to init: AccessDenied
SIGTERM to init: AccessDenied
)";

class SandboxTest : public DaemonTest {
  protected:
    std::string varlinkPath() const override { return dir_.socket(); }

    void SetUp() override {
        if (kUser == 0) {
            GTEST_SKIP() << "user nsfd-test-a is missing (scripts/test-users)";
        }
        DaemonTest::SetUp();
    }

    SocketDir dir_;
};

std::string shortName(const std::string& error) {
    return error.empty() ? "ok" : error.substr(error.rfind('.') + 1);
}

TEST_F(SandboxTest, OverDBusItsOwnProcessesWorkAndItsInitCannotBeKilled) {
    std::string out = asSandboxedUser(kUser, kUser, {}, [](sdbus::IConnection& bus) {
        // Pid 1 of the sandbox; a process of its own beside it.
        pid_t child = ::fork();
        if (child == 0) {
            ::pause();
            ::_exit(0);
        }
        ManagerProxy manager(bus, false);
        std::string lines;
        auto cell = [&](const std::string& name, const std::function<void()>& fn) {
            lines += name + ": " + shortName(errorNameOf(fn)) + "\n";
        };
        PidFd own = PidFd::open(child);
        std::string path;
        cell("track by pidfd",
             [&] { path = manager.TrackProcessByPidFd(sdbus::UnixFd(own.get())); });
        cell("raw pid", [&] { manager.GetProcessInfo(static_cast<uint32_t>(child)); });
        cell("listed", [&] {
            for (const auto& entry : manager.ListProcesses()) {
                if (entry.get<2>() == path) {
                    return;
                }
            }
            throw sdbus::Error("test.NotListed", "not listed");
        });
        ProcessProxy process(bus, path);
        cell("info by id", [&] { process.GetInfo(); });
        cell("mnt namespace by id", [&] {
            sdbus::UnixFd fd = process.GetNamespace("mnt");
            if (statOf(fd.get()).st_ino != statOf("/proc/self/ns/mnt").st_ino) {
                throw sdbus::Error("test.WrongNamespace", "not the sandbox's mount namespace");
            }
        });
        cell("pidfd by id", [&] { process.GetPidFd(); });
        cell("SIGTERM by id", [&] { process.SendSignal(SIGTERM); });
        int status = 0;
        ::waitpid(child, &status, 0);
        lines += "reaped by: " + std::to_string(WIFSIGNALED(status) ? WTERMSIG(status) : -1) + "\n";
        PidFd self = PidFd::open(1);  // ourselves, as the sandbox names us
        std::string initPath;
        cell("track init",
             [&] { initPath = manager.TrackProcessByPidFd(sdbus::UnixFd(self.get())); });
        ProcessProxy init(bus, initPath);
        // Were either allowed, this process would die here and say nothing.
        cell("SIGKILL to init", [&] { init.SendSignal(SIGKILL); });
        cell("SIGTERM to init", [&] { init.SendSignal(SIGTERM); });
        return lines;
    });
    EXPECT_EQ(out, kInsideExpected) << daemon_->log();
}

TEST_F(SandboxTest, OverVarlinkItsOwnProcessesWorkAndItsInitCannotBeKilled) {
    auto [status, out] = forkAndRead([&](int fd) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
        if (::setgroups(0, nullptr) < 0 || ::setresgid(kUser, kUser, kUser) < 0 ||
            ::setresuid(kUser, kUser, kUser) < 0) {
            ::_exit(126);
        }
        ::execlp("unshare", "unshare", "--user", "--map-root-user", "--pid", "--fork", "python3",
                 kCheck, "sandbox", dir_.socket().c_str(), nullptr);
        ::_exit(127);
    });
    EXPECT_EQ(status, 0) << out;
    EXPECT_EQ(out, kInsideExpected) << daemon_->log();
}

// The issue's own words: `nsfdctl signal 1 KILL` from inside, on each transport.
// The shell is pid 1 there; had nsfd killed it, it would print nothing.
TEST_F(SandboxTest, NsfdctlFromInsideCannotKillTheSandboxsInit) {
    for (const std::string transport : {"bus", "varlink"}) {
        std::string script = std::string(NSFD_TEST_NSFDCTL) + " --transport=" + transport +
                             " signal 1 KILL 2>/dev/null; echo \"exit $?\"";
        auto [status, out] = forkAndRead([&](int fd) {
            ::dup2(fd, STDOUT_FILENO);
            ::setenv("NSFD_VARLINK_SOCKET", dir_.socket().c_str(), 1);
            if (::setgroups(0, nullptr) < 0 || ::setresgid(kUser, kUser, kUser) < 0 ||
                ::setresuid(kUser, kUser, kUser) < 0) {
                ::_exit(126);
            }
            ::execlp("unshare", "unshare", "--user", "--map-root-user", "--pid", "--fork", "sh",
                     "-c", script.c_str(), nullptr);
            ::_exit(127);
        });
        EXPECT_EQ(status, 0) << transport;
        EXPECT_EQ(out, "exit 4\n") << transport << ": 4 is access denied";
    }
}

// A connection handed to another pid namespace (its maker gone before its
// first call): nsfdd cannot tell where the caller lives now, and takes no raw
// pid from it, not even root's.
TEST_F(SandboxTest, AConnectionHandedToAnotherPidNamespaceGetsForeignPidNamespace) {
    auto [status, out] =
        run({"/usr/bin/python3", NSFD_TEST_SOURCE_DIR "/tests/integration/dbus_handoff.py",
             "foreign", busAddress()});
    EXPECT_EQ(status, 0) << out;
    EXPECT_EQ(out, err::kForeignPidNamespace);
}

TEST_F(SandboxTest, ItsSubscriptionTellsItNothingOfProcessesOutside) {
    // Its user's process outside the sandbox, tracked and dropped by root while
    // the sandbox listens; then the sandbox tracks a process of its own, whose
    // news comes after all of root's.
    Child outside = spawnAs(kUser);
    int fds[4];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(fds + 2, O_CLOEXEC), 0);
    UniqueFd readyRead(fds[0]), readyWrite(fds[1]), goRead(fds[2]), goWrite(fds[3]);
    std::string heard;
    std::thread listener([&] {
        heard = asSandboxedUser(kUser, kUser, {}, [&](sdbus::IConnection& bus) {
            std::string lines;
            std::string ownPath;
            bool done = false;
            auto match = bus.addMatch("sender='org.nsfd1'", [&](sdbus::Message& message) {
                std::string line = message.getMemberName() + " " + message.getPath();
                if (message.getMemberName() == "ProcessTracked" ||
                    message.getMemberName() == "ProcessUntracked") {
                    sdbus::ObjectPath about;
                    message >> about;
                    if (!ownPath.empty() && about == ownPath) {
                        done = true;
                        return;
                    }
                    line += " " + std::string(about);
                }
                lines += line + "\n";
            });
            ManagerProxy manager(bus);  // subscribes
            pid_t child = ::fork();
            if (child == 0) {
                ::pause();
                ::_exit(0);
            }
            char c = 0;
            (void)!::write(readyWrite.get(), "r", 1);
            (void)!::read(goRead.get(), &c, 1);
            PidFd own = PidFd::open(child);
            ownPath = manager.TrackProcessByPidFd(sdbus::UnixFd(own.get()));
            if (!test::waitUntil(
                    bus, [&] { return done; }, std::chrono::seconds(20))) {
                lines += "timeout\n";
            }
            ::kill(child, SIGKILL);
            ::waitpid(child, nullptr, 0);
            return lines;
        });
    });
    char c = 0;
    ASSERT_EQ(::read(readyRead.get(), &c, 1), 1);
    std::string path = manager_->TrackProcess(static_cast<uint32_t>(outside.pid()));
    process(path)->Untrack();
    ASSERT_EQ(::write(goWrite.get(), "g", 1), 1);
    listener.join();
    EXPECT_EQ(heard.find("timeout"), std::string::npos) << heard;
    EXPECT_EQ(heard.find(path), std::string::npos) << "the sandbox heard of a process outside:\n"
                                                   << heard;
    outside.release(0);
    outside.reap();
}

}  // namespace
}  // namespace nsfd::test
