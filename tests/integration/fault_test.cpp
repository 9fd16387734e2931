// SPDX-License-Identifier: LGPL-2.1-or-later
// Faults: a process that stays a zombie, a namespace asked for while its
// process exits, the fd limit, a client that never reads, and nsfdd killed
// under load. (The bus daemon dying is in daemon_test.cpp.)
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <atomic>
#include <thread>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

std::uint64_t netNamespaceIdOf(pid_t pid) {
    return PidFd::open(pid).namespaceFd(NsType::Net).id();
}

// What a call came to: "ok", or the D-Bus error name.
std::string outcomeOf(const std::function<void()>& call) {
    std::string name = errorNameOf(call);
    return name.empty() ? "ok" : name;
}

pid_t startGreedyClient(int calls, bool withFds);

class FaultTest : public DaemonTest {
  protected:
    void SetUp() override {
        if (kUser == 0) {
            GTEST_SKIP() << "user nsfd-test-a is missing (scripts/test-users)";
        }
        DaemonTest::SetUp();
    }

    // While a client sends 3,000 calls and never reads a reply, everyone else
    // is answered promptly, and nsfdd holds no fd more once it is gone.
    void expectGreedyClientDisturbsNoOne(bool withFds) {
        auto pid = static_cast<uint32_t>(::getpid());
        auto stopGreedy = [](pid_t greedy) {
            ::kill(greedy, SIGKILL);
            reapWithin(greedy, "the greedy client to die of SIGKILL");
        };
        // Once first, for what nsfdd and its libraries allocate once.
        stopGreedy(startGreedyClient(100, withFds));
        test::waitUntil(
            *connection_, [] { return false; }, std::chrono::milliseconds(300));
        int fdsBefore = daemon_->openFdCount();

        pid_t greedy = startGreedyClient(3000, withFds);  // the bus refuses what is over its limits
        for (int i = 0; i < 200; ++i) {
            auto start = std::chrono::steady_clock::now();
            expectSameNamespace(manager_->GetNamespace(pid, "uts"), nsPath(::getpid(), "uts"));
            EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
        }
        stopGreedy(greedy);
        EXPECT_TRUE(waitUntil([&] { return daemon_->openFdCount() <= fdsBefore; }))
            << daemon_->openFdCount() << " fds open, " << fdsBefore << " before";
    }
};

TEST_F(FaultTest, AZombieThatIsNeverReapedStaysExitedAndCostsNothingMore) {
    Child child = Child::spawn();
    auto path = manager_->TrackProcess(static_cast<uint32_t>(child.pid()));
    auto proxy = process(path);
    int fdsWhileRunning = daemon_->openFdCount();
    child.release(7);
    child.awaitExit();
    ASSERT_TRUE(waitUntil([&] { return proxy->State() == "exited"; }));
    for (int i = 0; i < 200; ++i) {
        EXPECT_EQ(outcomeOf([&] { proxy->GetNamespace("net"); }), err::kProcessExited);
        EXPECT_EQ(proxy->GetInfo().at("State").get<std::string>(), "exited");
    }
    // No exit is reported before the reap, whatever the wait.
    test::waitUntil(
        *connection_, [] { return false; }, std::chrono::milliseconds(300));
    EXPECT_TRUE(manager_->exits.empty());
    EXPECT_EQ(proxy->ExitStatus(), -1);
    EXPECT_EQ(daemon_->openFdCount(), fdsWhileRunning);
    int status = child.reap();
    ASSERT_TRUE(waitUntil([&] { return manager_->exits.size() == 1; }));
    EXPECT_EQ(manager_->exits[0].waitStatus, status);
}

TEST_F(FaultTest, ANamespaceAskedForWhileItsProcessExitsIsAnErrorOrTheRightOne) {
    int gotFd = 0, gotError = 0;
    for (int i = 0; i < 150; ++i) {
        Child child = Child::spawn({}, {CLONE_NEWNET});
        std::uint64_t expected = netNamespaceIdOf(child.pid());
        auto pid = static_cast<uint32_t>(child.pid());
        auto proxy = process(manager_->TrackProcess(pid));
        child.release(0);  // it exits while the calls below run
        for (int call = 0; call < 4; ++call) {
            try {
                sdbus::UnixFd fd =
                    call % 2 == 0 ? proxy->GetNamespace("net") : manager_->GetNamespace(pid, "net");
                ASSERT_EQ(NsFd::adopt(duplicateFd(fd.get())).id(), expected)
                    << "a namespace that is not the process's";
                ++gotFd;
            } catch (const sdbus::Error& e) {
                ASSERT_TRUE(e.getName() == err::kProcessExited ||
                            e.getName() == err::kNoSuchProcess)
                    << e.getName() << ": " << e.getMessage();
                ++gotError;
            }
        }
        proxy->Untrack();
        child.reap();
    }
    std::cerr << "calls racing an exit: " << gotFd << " got the namespace, " << gotError
              << " a clean error\n";
    EXPECT_GT(gotFd, 0);
    EXPECT_GT(gotError, 0) << "no call lost the race: the test did not test it";
}

class LowFdLimitTest : public DaemonTest {
  protected:
    void SetUp() override {
        // Not DaemonTest::SetUp: this test starts nsfdd itself, with a low fd limit.
        LeakCheckedTest::SetUp();  // NOLINT(bugprone-parent-virtual-call)
        if (!kernelFeatures().namespaceIoctls || !kernelFeatures().info) {
            GTEST_SKIP() << "nsfdd needs PIDFD_GET_INFO and the namespace ioctls (6.13+)";
        }
        daemon_ = std::make_unique<Daemon>(busAddress(), Daemon::Options{"", {}, "debug", 100, ""});
        connection_ = connectToBus();
        manager_ = std::make_unique<ManagerProxy>(*connection_);
    }
};

TEST_F(LowFdLimitTest, TrackingStopsWithLimitExceededAndEveryoneIsStillServed) {
    std::vector<Child> children;
    std::vector<std::string> paths;
    std::string refusal;
    for (int i = 0; i < 100 && refusal.empty(); ++i) {
        children.push_back(Child::spawn());
        try {
            paths.push_back(manager_->TrackProcess(static_cast<uint32_t>(children.back().pid())));
        } catch (const sdbus::Error& e) {
            refusal = e.getName() + ": " + e.getMessage();
        }
    }
    EXPECT_EQ(refusal.rfind(err::kLimitExceeded, 0), 0U) << refusal;
    EXPECT_GT(paths.size(), 10U);
    // Everyone else is still served, fds included.
    pid_t pid = children.front().pid();
    expectSameNamespace(manager_->GetNamespace(static_cast<uint32_t>(pid), "net"),
                        nsPath(pid, "net"));
    EXPECT_EQ(manager_->ListProcesses().size(), paths.size());
    if (kUser != 0) {
        std::string asOther = asUser(kUser, kUser, {}, [](sdbus::IConnection& bus) {
            return ManagerProxy(bus).Get(dbus::kManagerInterface, "Version").get<std::string>();
        });
        EXPECT_EQ(asOther, NSFD_TEST_VERSION);
    }
    // Room again once some are untracked.
    for (int i = 0; i < 5; ++i) {
        manager_->UntrackProcess(paths[i]);
    }
    ASSERT_TRUE(waitUntil([&] { return manager_->ListProcesses().size() == paths.size() - 5; }));
    EXPECT_NO_THROW(manager_->TrackProcess(static_cast<uint32_t>(children.back().pid())));
    for (Child& child : children) {
        child.release(0);
        child.reap();
    }
}

// A process of user nsfd-test-a with its own connection that sends `calls`
// GetProcessInfo (or, `withFds`, GetNamespaces: replies that carry fds) about
// itself and never reads a reply; it waits to be killed.
pid_t startGreedyClient(int calls, bool withFds) {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    UniqueFd readyRead(ready[0]), readyWrite(ready[1]);
    (void)busAddress();  // the bus's address in the environment before the fork
    pid_t greedy = test::forkProcess();
    if (greedy == 0) {
        if (::setgroups(0, nullptr) < 0 || ::setresgid(kUser, kUser, kUser) < 0 ||
            ::setresuid(kUser, kUser, kUser) < 0) {
            ::_exit(1);
        }
        ::prctl(PR_SET_DUMPABLE, 1);  // the uid change cleared it; its namespaces are its own
        auto self = static_cast<uint32_t>(::getpid());
        auto connection = connectToBus();
        auto proxy = sdbus::createProxy(*connection, dbus::kBusName, dbus::kManagerPath);
        for (int i = 0; i < calls; ++i) {
            if (withFds) {
                proxy->callMethodAsync("GetNamespaces")
                    .onInterface(dbus::kManagerInterface)
                    .withArguments(self, std::vector<std::string>{"net", "uts"})
                    .uponReplyInvoke(
                        [](const sdbus::Error*, const std::map<std::string, sdbus::UnixFd>&) {});
            } else {
                proxy->callMethodAsync("GetProcessInfo")
                    .onInterface(dbus::kManagerInterface)
                    .withArguments(self)
                    .uponReplyInvoke(
                        [](const sdbus::Error*, const std::map<std::string, sdbus::Variant>&) {});
            }
        }
        (void)!::write(readyWrite.get(), "x", 1);
        ::pause();
        ::_exit(0);
    }
    readyWrite.reset();
    char c;
    (void)!::read(readyRead.get(), &c, 1);
    return greedy;
}

TEST_F(FaultTest, AClientThatNeverReadsItsRepliesDisturbsNoOne) {
    expectGreedyClientDisturbsNoOne(false);
}

TEST_F(FaultTest, AClientThatNeverReadsRepliesWithFdsDisturbsNoOne) {
    if (testBusKind() != BusKind::DbusBroker) {
        GTEST_SKIP() << "dbus-daemon charges the fds a client leaves unread to the sender "
                        "(nsfdd) and then stops reading from it: SECURITY.md, \"Known "
                        "weakness\"; run with NSFD_TEST_BUS=dbus-broker";
    }
    expectGreedyClientDisturbsNoOne(true);
}

TEST_F(FaultTest, Kill9UnderLoadThenRestartLosesNothing) {
    if (!kernelFeatures().exitInfo) {
        GTEST_SKIP() << "kernel lacks PIDFD_INFO_EXIT (6.15+): no exit statuses to keep";
    }
    constexpr int kCount = 100;
    std::vector<Child> children;
    std::vector<std::string> paths;
    for (int i = 0; i < kCount; ++i) {
        children.push_back(Child::spawn());
        paths.push_back(manager_->TrackProcess(static_cast<uint32_t>(children.back().pid())));
    }
    // Load: another process asks for namespaces and info of them all, without pause.
    pid_t loader = test::forkProcess();
    if (loader == 0) {
        auto connection = connectToBus();
        for (;;) {
            for (const std::string& path : paths) {
                try {
                    ProcessProxy proxy(*connection, path);
                    proxy.GetNamespaces({});
                    proxy.GetInfo();
                } catch (const sdbus::Error&) {
                    // nsfdd is down for a moment: expected
                }
            }
        }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Daemon::FdStore store = daemon_->takeFdStore();
    daemon_->kill9();
    std::vector<int> statuses(kCount, -1);
    for (int i = 0; i < 20; ++i) {  // exit and are reaped while it is down
        children[i].release(i + 1);
        statuses[i] = children[i].reap();
    }
    daemon_ = std::make_unique<Daemon>(busAddress(),
                                       Daemon::Options{config(), std::move(store), "debug", 0, ""});
    manager_ = std::make_unique<ManagerProxy>(*connection_);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // under load again
    ::kill(loader, SIGKILL);
    reapWithin(loader, "the loading client to die of SIGKILL");
    ASSERT_EQ(manager_->ListProcesses().size(), static_cast<std::size_t>(kCount));
    for (int i = 0; i < kCount; ++i) {
        auto proxy = process(paths[i]);
        EXPECT_EQ(proxy->State(), i < 20 ? "reaped" : "running") << i;
        EXPECT_EQ(proxy->ExitStatus(), statuses[i]) << i;
    }
    for (int i = 20; i < kCount; ++i) {
        children[i].release(0);
        children[i].reap();
    }
}

}  // namespace
}  // namespace nsfd::test
