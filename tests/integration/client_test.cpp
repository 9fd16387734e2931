// SPDX-License-Identifier: LGPL-2.1-or-later
// libnsfd-client against a live nsfdd: every function, every exception type.
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>

#include "fixture.hpp"
#include "nsfd/client.hpp"

namespace nsfd::test {
namespace {

class ClientTest : public DaemonTest {
  protected:
    std::string config() const override { return kGrantConfig; }
    void SetUp() override {
        DaemonTest::SetUp();
        if (!IsSkipped()) {
            client_.emplace(Client::connect(busAddress()));
        }
    }
    void TearDown() override {
        client_.reset();
        DaemonTest::TearDown();
    }
    std::optional<Client> client_;
};

TEST_F(ClientTest, DaemonFacts) {
    EXPECT_EQ(client_->daemonVersion(), NSFD_TEST_VERSION);
    std::vector<std::string> expected;
    for (std::string_view name : kernelFeatures().names()) {
        expected.emplace_back(name);
    }
    EXPECT_EQ(client_->kernelFeatures(), expected);
    EXPECT_EQ(client_->trackedCount(), 0U);
    Client viaSystem = Client::system();  // DBUS_SYSTEM_BUS_ADDRESS points at the test bus
    EXPECT_EQ(viaSystem.trackedCount(), 0U);
}

TEST_F(ClientTest, TrackAndQuery) {
    Child::Options options;
    options.cloneFlags = CLONE_NEWNET | CLONE_NEWUTS;
    Child child = Child::spawn(
        [] { return ::memfd_create("x", 0) >= 0 && ::dup2(3, 50) == 50 ? 0 : errno; }, options);
    PidFd pidfd = PidFd::open(child.pid());

    TrackedProcess process = client_->track(child.pid());
    EXPECT_EQ(process.pid(), child.pid());
    EXPECT_EQ(process.id(), pidfd.id());
    EXPECT_EQ(process.objectPath(), "/org/nsfd1/process/" + std::to_string(pidfd.id()));
    EXPECT_EQ(client_->track(pidfd).id(), process.id());
    EXPECT_EQ(client_->process(child.pid()).objectPath(), process.objectPath());
    ASSERT_EQ(client_->list().size(), 1U);
    EXPECT_EQ(client_->list()[0].id, process.id());
    EXPECT_EQ(client_->trackedCount(), 1U);

    EXPECT_EQ(process.state(), ProcessState::Running);
    EXPECT_EQ(process.exitStatus(), std::nullopt);
    NsFd net = process.namespaceFd(NsType::Net);
    EXPECT_EQ(net.type(), NsType::Net);
    EXPECT_EQ(net.inode(), statOf(nsPath(child.pid(), "net")).st_ino);
    EXPECT_EQ(::fcntl(net.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)
        << "received fds are close-on-exec";
    EXPECT_EQ(process.namespaceFds().size(), 10U);
    std::array<NsType, 2> two = {NsType::Uts, NsType::Ipc};
    auto fds = process.namespaceFds(two);
    ASSERT_EQ(fds.size(), 2U);
    EXPECT_EQ(fds.at(NsType::Uts).inode(), statOf(nsPath(child.pid(), "uts")).st_ino);
    auto ids = process.namespaceIds();
    EXPECT_EQ(ids.size(), 10U);
    EXPECT_EQ(ids.at(NsType::Net), net.id());

    ProcessInfo info = process.info();
    EXPECT_EQ(info.pid, child.pid());
    EXPECT_EQ(info.id, pidfd.id());
    EXPECT_EQ(info.parentPid, ::getpid());
    EXPECT_EQ(info.credentials, pidfd.credentials());
    EXPECT_EQ(process.credentials(), pidfd.credentials());
    EXPECT_EQ(client_->info(child.pid()).cgroupId, *pidfd.info().cgroupId());

    EXPECT_EQ(client_->namespaceFd(child.pid(), NsType::Uts).inode(),
              statOf(nsPath(child.pid(), "uts")).st_ino);
    EXPECT_EQ(client_->namespaceFds(child.pid()).size(), 10U);
    EXPECT_EQ(client_->namespaceFds(child.pid(), two).size(), 2U);

    PidFd received = process.pidFd();
    EXPECT_EQ(received.id(), pidfd.id());
    UniqueFd memfd = process.fd(50);
    EXPECT_EQ(statOf(memfd.get()).st_ino,
              statOf("/proc/" + std::to_string(child.pid()) + "/fd/50").st_ino);

    process.untrack();
    EXPECT_THROW(process.state(), NotTracked);
    EXPECT_THROW(client_->process(child.pid()), NotTracked);
    child.release(0);
    child.reap();
}

TEST_F(ClientTest, OnExitWithTheClientsLoopAndWithOurs) {
    if (!kernelFeatures().exitInfo) {
        GTEST_SKIP() << "kernel lacks PIDFD_INFO_EXIT (6.15+)";
    }
    Child first = Child::spawn();
    TrackedProcess process = client_->track(first.pid());
    std::optional<int> status;
    process.onExit([&](int s) {
        status = s;
        client_->stopEventLoop();
    });
    std::vector<ExitEvent> events;
    client_->onProcessExited([&](const ExitEvent& e) { events.push_back(e); });
    process.signal(SIGKILL);
    first.reap();
    client_->runEventLoop(std::chrono::seconds(10));
    EXPECT_EQ(status, SIGKILL);
    ASSERT_EQ(events.size(), 1U);
    EXPECT_EQ(events[0].id, process.id());
    EXPECT_EQ(process.state(), ProcessState::Reaped);
    EXPECT_EQ(process.exitStatus(), SIGKILL);

    // Our own poll loop.
    Child second = Child::spawn();
    TrackedProcess other = client_->track(second.pid());
    std::optional<int> otherStatus;
    other.onExit([&](int s) { otherStatus = s; });
    second.release(3);
    second.reap();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!otherStatus && std::chrono::steady_clock::now() < deadline) {
        struct pollfd pfd = {client_->eventFd(), client_->pollEvents(), 0};
        ::poll(&pfd, 1, 100);
        client_->processEvents();
    }
    EXPECT_EQ(otherStatus, 0x300);

    // Registered after the exit: still called, once.
    int calls = 0;
    other.onExit([&](int s) {
        ++calls;
        EXPECT_EQ(s, 0x300);
    });
    client_->processEvents();
    client_->processEvents();
    EXPECT_EQ(calls, 1);
}

TEST_F(ClientTest, EveryExceptionType) {
    EXPECT_THROW(client_->track(0), InvalidArgument);
    EXPECT_THROW(client_->namespaceFd(0, NsType::Net), InvalidArgument);

    Child child = Child::spawn();
    pid_t pid = child.pid();
    PidFd pidfd = PidFd::open(pid);
    child.release(0);
    child.awaitExit();
    EXPECT_THROW(client_->namespaceFd(pid, NsType::Net), ProcessExited);
    child.reap();
    EXPECT_THROW(client_->info(pid), NoSuchProcess);
    EXPECT_THROW(client_->process(pid), NotTracked);
    try {
        client_->info(pid);
        ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
        EXPECT_EQ(e.dbusName(), err::kNoSuchProcess);
        EXPECT_EQ(std::string(e.what()), "No such process: " + std::to_string(pid));
    }

    if (kUser != 0) {
        Child theirs = spawnAs(kOtherUser);
        std::vector<Child> own;
        for (int i = 0; i < 4; ++i) {
            own.push_back(spawnAs(kUser));
        }
        std::string result = asUser(kUser, kUser, {}, [&](sdbus::IConnection&) {
            Client client = Client::system();
            std::string out;
            try {
                client.namespaceFd(theirs.pid(), NsType::Net);
            } catch (const AccessDenied&) {
                out += "AccessDenied ";
            }
            try {
                for (Child& c : own) {
                    client.track(c.pid());
                }
            } catch (const LimitExceeded&) {
                out += "LimitExceeded";
            }
            return out;
        });
        EXPECT_EQ(result, "AccessDenied LimitExceeded");
        theirs.release(0);
        theirs.reap();
        for (Child& c : own) {
            c.release(0);
            c.reap();
        }
    }

    EXPECT_THROW(Client::connect("unix:path=/nonexistent/socket"), DaemonUnavailable);
    TestBus emptyBus;  // no nsfdd on it
    Client nobodyHome = Client::connect(emptyBus.address());
    EXPECT_THROW(nobodyHome.trackedCount(), DaemonUnavailable);
}

TEST_F(ClientTest, NotSupportedWhereTheKernelLacksAKind) {
    // NotSupported needs a kernel that lacks a namespace kind or ioctl.
    bool everyKind = true;
    for (NsType type : allNsTypes()) {
        everyKind = everyKind && errnoOf([&] { (void)PidFd::self().namespaceFd(type); }) == 0;
    }
    if (everyKind) {
        GTEST_SKIP() << "NotSupported: this kernel has every namespace kind and ioctl, so no call "
                        "can fail with it here";
    }
    for (NsType type : allNsTypes()) {
        if (errnoOf([&] { (void)PidFd::self().namespaceFd(type); }) == EOPNOTSUPP) {
            EXPECT_THROW(client_->namespaceFd(::getpid(), type), NotSupported);
        }
    }
}

}  // namespace
}  // namespace nsfd::test
