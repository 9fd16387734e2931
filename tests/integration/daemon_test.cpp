// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd on a real private bus, driven through generated proxies and busctl.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

TEST_F(DaemonTest, ManagerProperties) {
    EXPECT_EQ(manager_->Get(nsfd::dbus::kManagerInterface, "Version").get<std::string>(),
              NSFD_TEST_VERSION);
    std::vector<std::string> expected;
    for (std::string_view name : kernelFeatures().names()) {
        expected.emplace_back(name);
    }
    EXPECT_EQ(manager_->Get(nsfd::dbus::kManagerInterface, "KernelFeatures")
                  .get<std::vector<std::string>>(),
              expected);
    EXPECT_EQ(manager_->Get(nsfd::dbus::kManagerInterface, "TrackedProcesses").get<uint32_t>(), 0U);
    EXPECT_EQ(daemon_->lastStatus(), "Tracking 0 processes");
}

TEST_F(DaemonTest, TrackIsIdempotentAndNamedByPidfsId) {
    Child child = Child::spawn();
    PidFd pidfd = PidFd::open(child.pid());
    std::string expected = "/org/nsfd1/process/" + std::to_string(pidfd.id());

    sdbus::ObjectPath path = manager_->TrackProcess(static_cast<uint32_t>(child.pid()));
    EXPECT_EQ(path, expected);
    EXPECT_EQ(manager_->TrackProcess(static_cast<uint32_t>(child.pid())), expected);
    EXPECT_EQ(manager_->TrackProcessByPidFd(sdbus::UnixFd(pidfd.get())), expected);
    EXPECT_EQ(manager_->GetProcess(static_cast<uint32_t>(child.pid())), expected);
    EXPECT_EQ(manager_->Get(nsfd::dbus::kManagerInterface, "TrackedProcesses").get<uint32_t>(), 1U);
    EXPECT_TRUE(waitUntil([&] { return manager_->added.size() == 1; }));
    EXPECT_EQ(manager_->added.at(0), expected);

    auto list = manager_->ListProcesses();
    ASSERT_EQ(list.size(), 1U);
    EXPECT_EQ(list[0].get<0>(), static_cast<uint32_t>(child.pid()));
    EXPECT_EQ(list[0].get<1>(), pidfd.id());
    EXPECT_EQ(list[0].get<2>(), expected);

    auto objects = manager_->GetManagedObjects();
    ASSERT_EQ(objects.count(sdbus::ObjectPath(expected)), 1U);
    EXPECT_EQ(daemon_->lastStatus(), "Tracking 1 processes");
    child.release(0);
    child.reap();
}

TEST_F(DaemonTest, NamespaceFdsAreTheProcesssNamespaces) {
    Child::Options options;
    options.cloneFlags =
        CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUSER;
    Child child = Child::spawn({}, options);
    auto pid = static_cast<uint32_t>(child.pid());

    for (NsType type : allNsTypes()) {
        std::string name(toString(type));
        SCOPED_TRACE(name);
        expectSameNamespace(manager_->GetNamespace(pid, name), nsPath(child.pid(), name));
    }
    auto all = manager_->GetNamespaces(pid, {});
    EXPECT_EQ(all.size(), 10U);
    for (const auto& [name, fd] : all) {
        expectSameNamespace(fd, nsPath(child.pid(), name));
    }
    auto some = manager_->GetNamespaces(pid, {"net", "uts"});
    ASSERT_EQ(some.size(), 2U);
    expectSameNamespace(some.at("net"), nsPath(child.pid(), "net"));

    auto proxy = process(manager_->TrackProcess(pid));
    expectSameNamespace(proxy->GetNamespace("mnt"), nsPath(child.pid(), "mnt"));
    auto fds = proxy->GetNamespaces({"user", "ipc", "cgroup"});
    ASSERT_EQ(fds.size(), 3U);
    expectSameNamespace(fds.at("user"), nsPath(child.pid(), "user"));
    if (kernelFeatures().namespaceId) {
        auto ids = proxy->GetNamespaceIds();
        EXPECT_EQ(ids.size(), 10U);
        for (const auto& [name, id] : ids) {
            NsFd ns = NsFd::adopt(
                UniqueFd(::open(nsPath(child.pid(), name).c_str(), O_RDONLY | O_CLOEXEC)));
            EXPECT_EQ(id, ns.id()) << name;
        }
        EXPECT_NE(ids.at("net"), NsFd::current(NsType::Net).id());
    }
    child.release(0);
    child.reap();
}

TEST_F(DaemonTest, InfoAndCredentialsOfAChildWithDistinctIds) {
    Child child = Child::spawn([] {
        if (::setresgid(1001, 1002, 1003) < 0 || ::setresuid(2001, 2002, 2003) < 0) {
            return errno;
        }
        return 0;
    });
    auto pid = static_cast<uint32_t>(child.pid());
    PidFd pidfd = PidFd::open(child.pid());
    Info expected = pidfd.info();

    auto check = [&](std::map<std::string, sdbus::Variant> info) {
        EXPECT_EQ(info.at("Pid").get<uint32_t>(), pid);
        EXPECT_EQ(info.at("Id").get<uint64_t>(), pidfd.id());
        EXPECT_EQ(info.at("ThreadGroupId").get<uint32_t>(), pid);
        EXPECT_EQ(info.at("ParentPid").get<uint32_t>(), static_cast<uint32_t>(::getpid()));
        EXPECT_EQ(info.at("CgroupId").get<uint64_t>(), *expected.cgroupId());
        EXPECT_EQ(info.at("Ruid").get<uint32_t>(), 2001U);
        EXPECT_EQ(info.at("Euid").get<uint32_t>(), 2002U);
        EXPECT_EQ(info.at("Suid").get<uint32_t>(), 2003U);
        EXPECT_EQ(info.at("Fsuid").get<uint32_t>(), 2002U);
        EXPECT_EQ(info.at("Rgid").get<uint32_t>(), 1001U);
        EXPECT_EQ(info.at("Egid").get<uint32_t>(), 1002U);
        EXPECT_EQ(info.at("Sgid").get<uint32_t>(), 1003U);
        EXPECT_EQ(info.at("Fsgid").get<uint32_t>(), 1002U);
        EXPECT_EQ(info.at("State").get<std::string>(), "running");
        EXPECT_EQ(info.count("ExitStatus"), 0U);
    };
    check(manager_->GetProcessInfo(pid));
    auto proxy = process(manager_->TrackProcess(pid));
    check(proxy->GetInfo());

    EXPECT_EQ(proxy->Pid(), pid);
    EXPECT_EQ(proxy->Id(), pidfd.id());
    EXPECT_EQ(proxy->ParentPid(), static_cast<uint32_t>(::getpid()));
    EXPECT_EQ(proxy->CgroupId(), *expected.cgroupId());
    auto creds = proxy->Credentials();
    EXPECT_EQ(creds.get<0>(), 2001U);
    EXPECT_EQ(creds.get<1>(), 2002U);
    EXPECT_EQ(creds.get<2>(), 2003U);
    EXPECT_EQ(creds.get<3>(), 2002U);
    EXPECT_EQ(creds.get<4>(), 1001U);
    EXPECT_EQ(creds.get<5>(), 1002U);
    EXPECT_EQ(creds.get<6>(), 1003U);
    EXPECT_EQ(creds.get<7>(), 1002U);
    EXPECT_EQ(proxy->State(), "running");
    EXPECT_EQ(proxy->ExitStatus(), -1);
    child.release(0);
    child.reap();
}

class ExitTest : public DaemonTest {
  protected:
    // Tracks a child, ends it with `end`, and checks every report of its exit.
    void expectExitReported(const std::function<void(Child&)>& end, int expectedStatus) {
        if (!kernelFeatures().exitInfo) {
            GTEST_SKIP() << "kernel lacks PIDFD_INFO_EXIT (6.15+)";
        }
        Child child = Child::spawn();
        PidFd pidfd = PidFd::open(child.pid());
        std::string path = manager_->TrackProcess(static_cast<uint32_t>(child.pid()));
        auto proxy = process(path);

        end(child);
        child.awaitExit();
        ASSERT_TRUE(waitUntil([&] { return proxy->State() == "exited"; }))
            << "a zombie is 'exited' until its parent reaps it";
        EXPECT_EQ(proxy->ExitStatus(), -1);
        EXPECT_EQ(errorNameOf([&] { proxy->GetNamespace("net"); }), err::kProcessExited);

        int status = child.reap();
        ASSERT_EQ(status, expectedStatus);
        ASSERT_TRUE(waitUntil([&] { return !manager_->exits.empty() && !proxy->exits.empty(); }));
        ASSERT_EQ(manager_->exits.size(), 1U);
        EXPECT_EQ(manager_->exits[0].path, path);
        EXPECT_EQ(manager_->exits[0].pid, static_cast<uint32_t>(child.pid()));
        EXPECT_EQ(manager_->exits[0].id, pidfd.id());
        EXPECT_EQ(manager_->exits[0].waitStatus, status);
        EXPECT_EQ(proxy->exits, std::vector<int32_t>{status});
        EXPECT_EQ(proxy->State(), "reaped");
        EXPECT_EQ(proxy->ExitStatus(), status);
        EXPECT_EQ(proxy->GetInfo().at("ExitStatus").get<int32_t>(), status);
        EXPECT_EQ(proxy->states.back(), "reaped");

        // Retention is 1 s in this configuration: then the object goes away.
        ASSERT_TRUE(waitUntil([&] { return !manager_->removed.empty(); }));
        EXPECT_EQ(manager_->removed[0], path);
        EXPECT_EQ(errorNameOf([&] { proxy->GetInfo(); }), kUnknownObject);
        EXPECT_EQ(manager_->ListProcesses().size(), 0U);
    }
    std::string config() const override { return kGrantConfig; }
};

TEST_F(ExitTest, ExitCode42) {
    expectExitReported([](Child& child) { child.release(42); }, 0x2a00);
}

TEST_F(ExitTest, Sigkill) {
    expectExitReported([](Child& child) { ::kill(child.pid(), SIGKILL); }, SIGKILL);
}

TEST_F(DaemonTest, UntrackRemovesTheObject) {
    Child child = Child::spawn();
    auto pid = static_cast<uint32_t>(child.pid());
    std::string path = manager_->TrackProcess(pid);
    manager_->UntrackProcess(path);
    EXPECT_EQ(errorNameOf([&] { manager_->GetProcess(pid); }), err::kNotTracked);
    EXPECT_EQ(errorNameOf([&] { manager_->UntrackProcess(path); }), err::kNotTracked);
    ASSERT_TRUE(waitUntil([&] { return manager_->removed.size() == 1; }));

    path = manager_->TrackProcess(pid);
    auto proxy = process(path);
    proxy->Untrack();
    EXPECT_EQ(errorNameOf([&] { proxy->GetInfo(); }), kUnknownObject);
    EXPECT_EQ(errorNameOf([&] { proxy->Untrack(); }), kUnknownObject);
    ASSERT_TRUE(waitUntil([&] {
        return manager_->Get(nsfd::dbus::kManagerInterface, "TrackedProcesses").get<uint32_t>() ==
               0;
    }));
    child.release(0);
    child.reap();
}

TEST_F(DaemonTest, SignalsPidFdAndFds) {
    Child child = Child::spawn([] {
        int fd = ::memfd_create("nsfd-it", 0);
        return fd >= 0 && ::dup2(fd, 77) == 77 ? 0 : errno;
    });
    auto proxy = process(manager_->TrackProcess(static_cast<uint32_t>(child.pid())));

    sdbus::UnixFd pidfd = proxy->GetPidFd();
    EXPECT_EQ(statOf(pidfd.get()).st_ino, proxy->Id());

    sdbus::UnixFd memfd = proxy->GetFd(77);
    EXPECT_EQ(statOf(memfd.get()).st_ino,
              statOf("/proc/" + std::to_string(child.pid()) + "/fd/77").st_ino);
    EXPECT_EQ(errorNameOf([&] { proxy->GetFd(999); }), err::kInvalidArgs);
    EXPECT_EQ(errorNameOf([&] { proxy->GetFd(-1); }), err::kInvalidArgs);

    EXPECT_EQ(errorNameOf([&] { proxy->SendSignal(-1); }), err::kInvalidArgs);
    EXPECT_EQ(errorNameOf([&] { proxy->SendSignal(1000); }), err::kInvalidArgs);
    proxy->SendSignal(SIGTERM);
    int status = child.reap();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
}

TEST_F(DaemonTest, BadInputGetsNamedErrors) {
    Child child = Child::spawn();
    auto pid = static_cast<uint32_t>(child.pid());
    EXPECT_EQ(errorNameOf([&] { manager_->GetNamespace(0, "net"); }), err::kInvalidArgs);
    EXPECT_EQ(errorNameOf([&] { manager_->TrackProcess(0); }), err::kInvalidArgs);
    EXPECT_EQ(errorNameOf([&] { manager_->GetNamespace(0xFFFFFFFFU, "net"); }), err::kInvalidArgs);
    EXPECT_EQ(errorNameOf([&] { manager_->GetNamespace(pid, "bogus"); }), err::kInvalidArgs);
    EXPECT_EQ(errorNameOf([&] { manager_->GetNamespace(pid, "Net"); }), err::kInvalidArgs);
    EXPECT_EQ(errorNameOf([&] {
                  manager_->GetNamespaces(pid, {"net", "nope"});
              }),
              err::kInvalidArgs);
    EXPECT_EQ(errorNameOf([&] { manager_->GetProcess(pid); }), err::kNotTracked);
    EXPECT_EQ(errorNameOf([&] { manager_->UntrackProcess("/org/nsfd1/process/1"); }),
              err::kNotTracked);
    EXPECT_EQ(errorNameOf([&] { manager_->UntrackProcess("/org/nsfd1/other"); }), err::kNotTracked);

    // A thread is not a process.
    IdleThread thread;
    pid_t tid = thread.tid();
    EXPECT_EQ(errorNameOf([&] { manager_->TrackProcess(static_cast<uint32_t>(tid)); }),
              err::kInvalidArgs);
    if (kernelFeatures().threadPidFd) {
        PidFd threadFd = PidFd::open(tid, PidFdFlags::Thread);
        EXPECT_EQ(
            errorNameOf([&] { manager_->TrackProcessByPidFd(sdbus::UnixFd(threadFd.get())); }),
            err::kInvalidArgs);
    }

    // Fds that are not pidfds.
    int pipeFds[2];
    ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
    UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
    EXPECT_EQ(errorNameOf([&] { manager_->TrackProcessByPidFd(sdbus::UnixFd(readEnd.get())); }),
              err::kInvalidArgs);
    NsFd net = NsFd::current(NsType::Net);
    EXPECT_EQ(errorNameOf([&] { manager_->TrackProcessByPidFd(sdbus::UnixFd(net.get())); }),
              err::kInvalidArgs);

    // A process that is gone.
    PidFd pidfd = PidFd::open(child.pid());
    child.release(0);
    child.awaitExit();
    EXPECT_EQ(errorNameOf([&] { manager_->GetNamespace(pid, "net"); }), err::kProcessExited);
    child.reap();
    EXPECT_EQ(errorNameOf([&] { manager_->GetNamespace(pid, "net"); }), err::kNoSuchProcess);
    EXPECT_EQ(errorNameOf([&] { manager_->GetProcessInfo(pid); }), err::kNoSuchProcess);
    EXPECT_EQ(errorNameOf([&] { manager_->TrackProcessByPidFd(sdbus::UnixFd(pidfd.get())); }),
              err::kProcessExited);
}

TEST_F(DaemonTest, WrongSignaturesAreRejected) {
    auto call = [](const std::vector<std::string>& args) {
        std::vector<std::string> argv = {"busctl", "call", "org.nsfd1", "/org/nsfd1",
                                         "org.nsfd1.Manager"};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv);
    };
    EXPECT_NE(call({"GetNamespace", "ss", "1", "net"}).first, 0);
    EXPECT_NE(call({"GetNamespace", "u", "1"}).first, 0);
    EXPECT_NE(call({"TrackProcess", "s", "1"}).first, 0);
    EXPECT_NE(call({"NoSuchMethod"}).first, 0);
    // Still serving, correctly.
    auto [status, out] = call({"GetNamespace", "us", std::to_string(::getpid()), "net"});
    EXPECT_EQ(status, 0);
    EXPECT_EQ(out.rfind("h ", 0), 0U) << out;
}

TEST_F(DaemonTest, BusctlSeesTheContract) {
    Child child = Child::spawn();
    std::string pid = std::to_string(child.pid());
    auto [status, out] = run({"busctl", "call", "org.nsfd1", "/org/nsfd1", "org.nsfd1.Manager",
                              "TrackProcess", "u", pid});
    ASSERT_EQ(status, 0);
    std::string path = "/org/nsfd1/process/" + std::to_string(PidFd::open(child.pid()).id());
    EXPECT_EQ(out, "o \"" + path + "\"\n");
    auto [status2, state] =
        run({"busctl", "get-property", "org.nsfd1", path, "org.nsfd1.Process", "State"});
    EXPECT_EQ(status2, 0);
    EXPECT_EQ(state, "s \"running\"\n");
    auto [status3, tree] = run({"busctl", "tree", "--list", "org.nsfd1"});
    EXPECT_EQ(status3, 0);
    EXPECT_NE(tree.find(path), std::string::npos) << tree;
    child.release(0);
    child.reap();
}

// Every method and property through busctl, as a shell user would call them.
TEST_F(DaemonTest, EveryMethodThroughBusctl) {
    Child child = Child::spawn();
    std::string pid = std::to_string(child.pid());
    PidFd pidfd = PidFd::open(child.pid());
    std::string path = "/org/nsfd1/process/" + std::to_string(pidfd.id());
    auto manager = [](std::vector<std::string> args) {
        args.insert(args.begin(),
                    {"busctl", "call", "org.nsfd1", "/org/nsfd1", "org.nsfd1.Manager"});
        return run(args);
    };
    auto process = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {"busctl", "call", "org.nsfd1", path, "org.nsfd1.Process"});
        return run(args);
    };
    auto ok = [](const std::pair<int, std::string>& result, const std::string& prefix) {
        EXPECT_EQ(result.first, 0) << prefix;
        EXPECT_EQ(result.second.rfind(prefix, 0), 0U) << result.second;
    };
    ok(manager({"TrackProcess", "u", pid}), "o \"" + path + "\"");
    ok(manager({"GetProcess", "u", pid}), "o \"" + path + "\"");
    ok(manager({"ListProcesses"}), "a(uto) 1 " + pid + " " + std::to_string(pidfd.id()));
    ok(manager({"GetNamespace", "us", pid, "uts"}), "h ");
    ok(manager({"GetNamespaces", "uas", pid, "2", "net", "ipc"}), "a{sh} 2 \"net\"");  // as asked
    ok(manager({"GetNamespaces", "uas", pid, "2", "uts", "uts"}), "a{sh} 1 \"uts\"");
    ok(manager({"GetProcessInfo", "u", pid}), "a{sv} 14 ");
    ok(process({"GetNamespace", "s", "net"}), "h ");
    ok(process({"GetNamespaces", "as", "0"}), "a{sh} 10 ");
    ok(process({"GetNamespaceIds"}), "a{st} 10 ");
    ok(process({"GetInfo"}), "a{sv} 14 ");
    ok(process({"GetPidFd"}), "h ");
    ok(process({"GetFd", "i", "0"}), "h ");
    ok(process({"SendSignal", "i", "0"}), "");
    for (const char* property :
         {"Pid", "Id", "ParentPid", "CgroupId", "Credentials", "State", "ExitStatus"}) {
        auto [status, out] =
            run({"busctl", "get-property", "org.nsfd1", path, "org.nsfd1.Process", property});
        EXPECT_EQ(status, 0) << property;
        EXPECT_FALSE(out.empty()) << property;
    }
    for (const char* property : {"Version", "TrackedProcesses", "KernelFeatures"}) {
        EXPECT_EQ(run({"busctl", "get-property", "org.nsfd1", "/org/nsfd1", "org.nsfd1.Manager",
                       property})
                      .first,
                  0)
            << property;
    }
    ok(process({"Untrack"}), "");
    ok(manager({"TrackProcess", "u", pid}), "o ");
    ok(manager({"UntrackProcess", "o", path}), "");
    child.release(0);
    child.reap();
}

TEST_F(DaemonTest, ThousandsOfFailingRequestsLeaveNoFdOpen) {
    // The first call makes sdbus-c++ set up what it keeps for good.
    (void)manager_->GetNamespace(static_cast<uint32_t>(::getpid()), "net");
    // nsfdd closes its copies of a reply's fds just after sending it; one more
    // round trip makes sure it has.
    auto roundTrip = [&] { (void)manager_->Version(); };
    roundTrip();
    int baseline = daemon_->openFdCount();
    Child child = Child::spawn();
    auto pid = static_cast<uint32_t>(child.pid());
    PidFd pidfd = PidFd::open(child.pid());
    child.release(0);
    child.awaitExit();
    int pipeFds[2];
    ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
    UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
    for (int i = 0; i < 500; ++i) {
        EXPECT_EQ(errorNameOf([&] { manager_->GetNamespaces(pid, {}); }), err::kProcessExited);
        EXPECT_EQ(errorNameOf([&] { manager_->GetNamespace(pid, "net"); }), err::kProcessExited);
        EXPECT_EQ(errorNameOf([&] { manager_->TrackProcessByPidFd(sdbus::UnixFd(readEnd.get())); }),
                  err::kInvalidArgs);
    }
    child.reap();
    for (int i = 0; i < 500; ++i) {
        EXPECT_EQ(errorNameOf([&] { manager_->TrackProcessByPidFd(sdbus::UnixFd(pidfd.get())); }),
                  err::kProcessExited);
        EXPECT_EQ(errorNameOf([&] { manager_->GetProcessInfo(pid); }), err::kNoSuchProcess);
    }
    roundTrip();
    EXPECT_EQ(daemon_->openFdCount(), baseline);
    EXPECT_EQ(manager_->GetNamespaces(static_cast<uint32_t>(::getpid()), {}).size(), 10U);
}

TEST_F(DaemonTest, StopsCleanlyOnSigtermAndFailsWhenTheBusDies) {
    TestBus ownBus;
    Daemon daemon(ownBus.address());
    ownBus.kill();
    int status = daemon.awaitExit(std::chrono::seconds(10));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "status " << status;
}

TEST_F(DaemonTest, TellsSystemdItIsStoppingOnce) {
    int status = daemon_->stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    EXPECT_EQ(daemon_->notificationsOf("STOPPING=1"), 1U);
    EXPECT_EQ(daemon_->notificationsOf("READY=1"), 1U);
    daemon_.reset();
}

TEST(DaemonConfigTest, BadConfigStopsTheDaemonWithFileAndLine) {
    char path[] = "/tmp/nsfdd-conf.XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    std::string text =
        "[limits]\ntracked-per-user = 5\n\n[[grant]]\ngroup = \"users\"\n"
        "namespaces = [\"net\", \"network\"]\n";
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
    auto [status, out] = runDaemonOnce({"--config", path, "--bus", "unix:path=/nonexistent"});
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    EXPECT_NE(out.find(std::string(path) + ":6: unknown namespace type 'network'"),
              std::string::npos)
        << out;
    // A float where an integer belongs, one no integer type holds (the config
    // fuzzer found its conversion to be undefined behaviour).
    text = "[limits]\ntracked-per-user = 20e67\n";
    fd = ::open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
    auto [status1, out1] = runDaemonOnce({"--config", path, "--check-config"});
    EXPECT_TRUE(WIFEXITED(status1) && WEXITSTATUS(status1) == 1);
    EXPECT_NE(out1.find(std::string(path) + ":2: tracked-per-user must be an integer"),
              std::string::npos)
        << out1;
    auto [status2, out2] = runDaemonOnce({"--config", "/nonexistent.conf"});
    EXPECT_TRUE(WIFEXITED(status2) && WEXITSTATUS(status2) == 1);
    EXPECT_NE(out2.find("/nonexistent.conf: No such file or directory"), std::string::npos) << out2;
    ::unlink(path);
}

// -- Authorization, with real processes of real other users --

class AuthorizationTest : public DaemonTest {
  protected:
    std::string config() const override { return kGrantConfig; }

    void SetUp() override {
        if (kUser == 0 || kOtherUser == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test creates "
                            "them: useradd --system --no-create-home --user-group NAME)";
        }
        DaemonTest::SetUp();
    }

    // "ok" if the fd a caller running as `uid` receives is the right namespace.
    std::string namespaceAs(uid_t uid, const std::vector<gid_t>& groups, pid_t target,
                            const std::string& type) {
        std::string result = asUser(uid, uid, groups, [&](sdbus::IConnection& bus) {
            ManagerProxy manager(bus);
            sdbus::UnixFd fd = manager.GetNamespace(static_cast<uint32_t>(target), type);
            return "inode " + std::to_string(statOf(fd.get()).st_ino);
        });
        if (result.rfind("inode ", 0) != 0) {
            return result;
        }
        return result == "inode " + std::to_string(statOf(nsPath(target, type)).st_ino)
                   ? "ok"
                   : "wrong namespace";
    }
};

bool isDenied(const std::string& result) {
    return result.rfind(std::string("error:") + err::kAccessDenied, 0) == 0;
}

TEST_F(AuthorizationTest, NamespacesFollowTheKernelRule) {
    Child own = spawnAs(kUser);
    Child ownSecret = spawnAs(kUser, /*dumpable=*/false);
    Child others = spawnAs(kOtherUser);
    Child roots = Child::spawn();

    EXPECT_EQ(namespaceAs(kUser, {}, own.pid(), "net"), "ok");
    EXPECT_EQ(namespaceAs(kUser, {}, own.pid(), "mnt"), "ok");
    EXPECT_TRUE(isDenied(namespaceAs(kUser, {}, ownSecret.pid(), "net")));
    EXPECT_TRUE(isDenied(namespaceAs(kUser, {}, others.pid(), "net")));
    EXPECT_TRUE(isDenied(namespaceAs(kUser, {}, roots.pid(), "uts")));
    EXPECT_NE(daemon_->log().find("Denied uid " + std::to_string(kUser)), std::string::npos)
        << "denials are logged with the caller";

    // The config grants group "users" net and uts of any process, nothing else.
    EXPECT_EQ(namespaceAs(kUser, {kGrantedGroup}, roots.pid(), "net"), "ok");
    EXPECT_EQ(namespaceAs(kUser, {kGrantedGroup}, roots.pid(), "uts"), "ok");
    EXPECT_TRUE(isDenied(namespaceAs(kUser, {kGrantedGroup}, roots.pid(), "mnt")));

    for (Child* child : {&own, &ownSecret, &others, &roots}) {
        child->release(0);
        child->reap();
    }
}

TEST_F(AuthorizationTest, InfoTrackingSignalsAndFds) {
    Child own = spawnAs(kUser);
    Child others = spawnAs(kOtherUser);
    auto ownPid = static_cast<uint32_t>(own.pid());
    auto otherPid = static_cast<uint32_t>(others.pid());
    std::string othersPath = manager_->TrackProcess(otherPid);

    std::string result = asUser(kUser, kUser, {}, [&](sdbus::IConnection& bus) {
        ManagerProxy manager(bus);
        std::string out;
        out += std::to_string(manager.GetProcessInfo(ownPid).at("Ruid").get<uint32_t>()) + " ";
        out += errorNameOf([&] { manager.GetProcessInfo(otherPid); }) + " ";
        out += errorNameOf([&] { manager.TrackProcess(otherPid); }) + " ";
        // Another user's object answers as if it were not there.
        ProcessProxy theirs(bus, othersPath);
        out += errorNameOf([&] { theirs.GetInfo(); }) + " ";
        out += errorNameOf([&] { theirs.SendSignal(SIGKILL); }) + " ";
        out += errorNameOf([&] { manager.GetProcess(otherPid); }) + " ";
        // Its own process: track, list, signal 0, but never GetFd.
        ProcessProxy mine(bus, manager.TrackProcess(ownPid));
        out += std::to_string(manager.ListProcesses().size()) + " ";
        mine.SendSignal(0);
        out += errorNameOf([&] { mine.GetFd(0); }) + " ";
        sdbus::UnixFd pidfd = mine.GetPidFd();
        out += std::to_string(statOf(pidfd.get()).st_ino == mine.Id());
        return out;
    });
    std::string d = err::kAccessDenied, n = err::kNotTracked, u = kUnknownObject;
    EXPECT_EQ(result, std::to_string(kUser) + " " + d + " " + d + " " + u + " " + u + " " + n +
                          " 1 " + d + " 1");

    // A pidfd of another user's process grants nothing more.
    PidFd othersFd = PidFd::open(others.pid());
    std::string byPidFd = asUser(kUser, kUser, {}, [&](sdbus::IConnection& bus) {
        ManagerProxy manager(bus);
        return errorNameOf([&] { manager.TrackProcessByPidFd(sdbus::UnixFd(othersFd.get())); });
    });
    EXPECT_EQ(byPidFd, d);

    // Granted "info": any process.
    std::string granted = asUser(kUser, kUser, {kGrantedGroup}, [&](sdbus::IConnection& bus) {
        ManagerProxy manager(bus);
        return std::to_string(manager.GetProcessInfo(otherPid).at("Ruid").get<uint32_t>());
    });
    EXPECT_EQ(granted, std::to_string(kOtherUser));
    for (Child* child : {&own, &others}) {
        child->release(0);
        child->reap();
    }
}

TEST_F(AuthorizationTest, PerUserQuota) {
    std::vector<Child> children;
    children.reserve(4);
    for (int i = 0; i < 4; ++i) {
        children.push_back(spawnAs(kUser));
    }
    std::string result = asUser(kUser, kUser, {}, [&](sdbus::IConnection& bus) {
        ManagerProxy manager(bus);
        std::string out;
        for (Child& child : children) {
            out += errorNameOf([&] { manager.TrackProcess(static_cast<uint32_t>(child.pid())); });
            out += ";";
        }
        return out;
    });
    EXPECT_EQ(result, std::string(";;;") + err::kLimitExceeded + ";");
    // Root has no quota.
    for (Child& child : children) {
        manager_->TrackProcess(static_cast<uint32_t>(child.pid()));
    }
    for (Child& child : children) {
        child.release(0);
        child.reap();
    }
}

}  // namespace
}  // namespace nsfd::test
