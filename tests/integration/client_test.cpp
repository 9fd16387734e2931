// SPDX-License-Identifier: LGPL-2.1-or-later
// libnsfd-client against a live nsfdd: every function, every exception type.
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <filesystem>

#include "fixture.hpp"
#include "nsfd/client.hpp"

namespace nsfd {
// For GoogleTest's messages: "Varlink", not "4-byte object".
void PrintTo(TransportKind kind, std::ostream* os) {
    *os << (kind == TransportKind::Bus ? "Bus" : "Varlink");
}
}  // namespace nsfd

namespace nsfd::test {
namespace {

// Every test runs over both transports: the same API, the same answers.
class ClientTest : public DaemonTest, public ::testing::WithParamInterface<TransportKind> {
  protected:
    std::string config() const override { return kGrantConfig; }
    std::string varlinkPath() const override { return dir_ ? dir_->socket() : ""; }
    void SetUp() override {
        if (GetParam() == TransportKind::Varlink) {
            dir_.emplace();
            ::setenv("NSFD_VARLINK_SOCKET", dir_->socket().c_str(), 1);
        }
        DaemonTest::SetUp();
        if (!IsSkipped()) {
            client_.emplace(open());
        }
    }
    void TearDown() override {
        client_.reset();
        DaemonTest::TearDown();
        ::setenv("NSFD_VARLINK_SOCKET", kNoVarlinkSocket, 1);
        dir_.reset();
    }
    Client open() const {
        return GetParam() == TransportKind::Varlink ? Client::varlink(dir_->socket())
                                                    : Client::connect(busAddress());
    }
    std::optional<SocketDir> dir_;
    std::optional<Client> client_;
};

INSTANTIATE_TEST_SUITE_P(, ClientTest,
                         ::testing::Values(TransportKind::Bus, TransportKind::Varlink),
                         [](const auto& info) {
                             return info.param == TransportKind::Bus ? "Bus" : "Varlink";
                         });

TEST_P(ClientTest, DaemonFacts) {
    EXPECT_EQ(client_->transport(), GetParam());
    EXPECT_EQ(client_->daemonVersion(), NSFD_TEST_VERSION);
    std::vector<std::string> expected;
    for (std::string_view name : kernelFeatures().names()) {
        expected.emplace_back(name);
    }
    EXPECT_EQ(client_->kernelFeatures(), expected);
    EXPECT_EQ(client_->trackedCount(), 0U);
    // The socket of NSFD_VARLINK_SOCKET when something listens there, else
    // the bus of DBUS_SYSTEM_BUS_ADDRESS (the test bus).
    Client viaSystem = Client::system();
    EXPECT_EQ(viaSystem.transport(), GetParam());
    EXPECT_EQ(viaSystem.trackedCount(), 0U);
    EXPECT_EQ(Client::bus().transport(), TransportKind::Bus);
}

TEST_P(ClientTest, TrackAndQuery) {
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

TEST_P(ClientTest, OnExitWithTheClientsLoopAndWithOurs) {
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

TEST_P(ClientTest, EveryExceptionType) {
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
        own.reserve(4);
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
    try {
        Client::varlink("/nonexistent/socket");
        ADD_FAILURE() << "no exception";
    } catch (const DaemonUnavailable& e) {
        EXPECT_EQ(e.dbusName(), "System.Error.ENOENT");
    }
    TestBus emptyBus;  // no nsfdd on it
    Client nobodyHome = Client::connect(emptyBus.address());
    EXPECT_THROW(nobodyHome.trackedCount(), DaemonUnavailable);
}

TEST_P(ClientTest, NotSupportedWhereTheKernelLacksAKind) {
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

TEST_P(ClientTest, InteractiveAuthorizationNeedsVarlink) {
    if (GetParam() == TransportKind::Bus) {
        EXPECT_THROW(client_->allowInteractiveAuthorization(true), NotSupported);
        client_->allowInteractiveAuthorization(false);
        return;
    }
    // nsfdd takes the flag with every call (polkit would use it; here the
    // kernel rule and root decide before it).
    client_->allowInteractiveAuthorization(true);
    EXPECT_EQ(client_->trackedCount(), 0U);
    EXPECT_EQ(client_->namespaceFd(::getpid(), NsType::Net).inode(),
              statOf(nsPath(::getpid(), "net")).st_ino);
}

// Over Varlink the client has its own connections to nsfdd: they must
// survive nsfdd's restart (socket activation keeps the socket; here nsfdd
// binds it again).
TEST_P(ClientTest, ReconnectsWhenNsfddRestartsAndMissesNoExitItWaitsFor) {
    if (GetParam() == TransportKind::Bus) {
        GTEST_SKIP() << "over D-Bus the bus keeps the connection: RestartTest covers it";
    }
    Child waitedFor = Child::spawn();
    TrackedProcess process = client_->track(waitedFor.pid());
    std::optional<int> status;
    process.onExit([&](int s) { status = s; });
    std::vector<ExitEvent> events;
    client_->onProcessExited([&](const ExitEvent& e) { events.push_back(e); });

    // No fd store here: the new nsfdd tracks nothing, so the process waited
    // for is gone for the client, which says so (kNoExitStatus) once it
    // watches again.
    daemon_->stop();
    daemon_ = std::make_unique<Daemon>(busAddress(),
                                       Daemon::Options{config(), {}, "debug", 0, varlinkPath()});
    EXPECT_EQ(client_->trackedCount(), 0U);  // a new connection, made before sending
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!status && std::chrono::steady_clock::now() < deadline) {
        struct pollfd pfd = {client_->eventFd(), client_->pollEvents(), 0};
        ::poll(&pfd, 1, 100);
        client_->processEvents();
    }
    EXPECT_EQ(status, kNoExitStatus);

    // The new stream tells of exits.
    Child next = Child::spawn();
    TrackedProcess nextProcess = client_->track(next.pid());
    next.release(5);
    next.reap();
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (events.empty() && std::chrono::steady_clock::now() < deadline) {
        client_->runEventLoop(std::chrono::milliseconds(100));
    }
    ASSERT_EQ(events.size(), 1U);
    EXPECT_EQ(events[0].id, nextProcess.id());
    EXPECT_EQ(events[0].waitStatus, 5 << 8);
    waitedFor.release(0);
    waitedFor.reap();

    // nsfdd gone: a call says so; the exit stream tries again quietly (for
    // 30 s, then it says so too), and the client works again once it is back.
    daemon_->stop();
    daemon_.reset();
    EXPECT_THROW(client_->trackedCount(), DaemonUnavailable);
    EXPECT_NO_THROW(client_->processEvents());
    daemon_ = std::make_unique<Daemon>(busAddress(),
                                       Daemon::Options{config(), {}, "debug", 0, varlinkPath()});
    EXPECT_EQ(client_->trackedCount(), 0U);
    client_->processEvents();
}

// Waits (the client's loop) until `done`, at most 10 s.
template <typename Done>
void runUntil(Client& client, Done done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
        client.runEventLoop(std::chrono::milliseconds(50));
    }
}

// Callbacks are the caller's code: they may use the client, listen for more,
// run its loop, and throw.
TEST_P(ClientTest, CallbacksMayCallBackIntoTheClient) {
    Child first = Child::spawn();
    Child second = Child::spawn();
    TrackedProcess process = client_->track(first.pid());
    std::vector<std::uint64_t> heard, heardLater;
    std::optional<TrackedProcess> trackedInCallback;
    client_->onProcessExited([&](const ExitEvent& e) {
        heard.push_back(e.id);
        if (heard.size() == 1) {
            client_->onProcessExited(
                [&](const ExitEvent& later) { heardLater.push_back(later.id); });
            client_->processEvents();
            trackedInCallback = client_->track(second.pid());
            trackedInCallback->onExit([&](int) { client_->stopEventLoop(); });
        }
    });
    std::vector<std::uint64_t> heardToo;  // by the listener after it
    client_->onProcessExited([&](const ExitEvent& e) { heardToo.push_back(e.id); });
    first.release(0);
    first.reap();
    runUntil(*client_, [&] { return trackedInCallback.has_value(); });
    ASSERT_TRUE(trackedInCallback);
    second.release(0);
    second.reap();
    runUntil(*client_, [&] { return heardToo.size() == 2 && heardLater.size() == 1; });
    EXPECT_EQ(heard, (std::vector<std::uint64_t>{process.id(), trackedInCallback->id()}));
    EXPECT_EQ(heardToo, heard);
    EXPECT_EQ(heardLater, (std::vector<std::uint64_t>{trackedInCallback->id()}));
}

// An exception from a callback goes out of processEvents() (or runEventLoop())
// to the caller; the other callbacks of the same exit are still called, at the
// next processing, and the client keeps working.
TEST_P(ClientTest, ACallbackThatThrowsLosesNoOtherCallback) {
    Child child = Child::spawn();
    TrackedProcess process = client_->track(child.pid());
    std::vector<std::string> called;
    process.onExit([&](int) {
        called.push_back("first");
        throw std::runtime_error("from a callback");
    });
    process.onExit([&](int) { called.push_back("second"); });
    client_->onProcessExited([&](const ExitEvent&) { called.push_back("listener"); });
    child.release(0);
    child.reap();
    bool threw = false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (called.size() < 3 && std::chrono::steady_clock::now() < deadline) {
        try {
            client_->runEventLoop(std::chrono::milliseconds(50));
        } catch (const std::runtime_error& e) {
            ASSERT_STREQ(e.what(), "from a callback");
            threw = true;
        }
    }
    EXPECT_TRUE(threw);
    EXPECT_EQ(called, (std::vector<std::string>{"first", "second", "listener"}));

    // Callbacks due at once (the process was reaped before they were set).
    called.clear();
    process.onExit([&](int) {
        called.push_back("first");
        throw std::runtime_error("from a callback");
    });
    process.onExit([&](int) { called.push_back("second"); });
    EXPECT_THROW(client_->processEvents(), std::runtime_error);
    client_->processEvents();
    EXPECT_EQ(called, (std::vector<std::string>{"first", "second"}));
    EXPECT_EQ(client_->daemonVersion(), NSFD_TEST_VERSION);
}

TEST_P(ClientTest, ReceivedFdsAreCloseOnExec) {
    Child child = Child::spawn();
    TrackedProcess process = client_->track(child.pid());
    auto closeOnExec = [](int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; };
    EXPECT_TRUE(closeOnExec(process.namespaceFd(NsType::Net).get()));
    for (const auto& [type, fd] : client_->namespaceFds(child.pid())) {
        EXPECT_TRUE(closeOnExec(fd.get())) << toString(type);
    }
    EXPECT_TRUE(closeOnExec(process.pidFd().get()));
    EXPECT_TRUE(closeOnExec(process.fd(0).get()));
    child.release(0);
    child.reap();
}

// The sockets and epoll fds open here: a client's connections.
int connectionFdCount() {
    int count = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code error;
        std::string target = std::filesystem::read_symlink(entry.path(), error).string();
        count += target.rfind("socket:", 0) == 0 || target == "anon_inode:[eventpoll]" ? 1 : 0;
    }
    return count;
}

// A callback that holds its TrackedProcess (the natural way to write one)
// must not keep a client that is gone, and its connections, alive.
TEST_P(ClientTest, AClientGoneWithCallbacksPendingKeepsNoConnection) {
    Child child = Child::spawn();
    int before = connectionFdCount();
    {
        Client client = open();
        TrackedProcess process = client.track(child.pid());
        process.onExit([process](int) { (void)process.id(); });
        client.onProcessExited([process](const ExitEvent&) { (void)process.id(); });
        Client moved = std::move(client);
        moved.processEvents();
        EXPECT_GT(connectionFdCount(), before);
    }
    EXPECT_EQ(connectionFdCount(), before);
    child.release(0);
    child.reap();
}
}  // namespace
}  // namespace nsfd::test

namespace nsfd::test {
namespace {

// SO_NETNS_COOKIE (71): which network namespace a socket is in.
std::uint64_t cookieOf(int socket) {
    std::uint64_t cookie = 0;
    socklen_t length = sizeof(cookie);
    EXPECT_EQ(::getsockopt(socket, SOL_SOCKET, 71, &cookie, &length), 0);
    return cookie;
}

TEST_P(ClientTest, OpenSocketByPidAndOnATrackedProcess) {
    Child child = Child::spawn({}, Child::Options{CLONE_NEWNET, 0});
    std::uint64_t theirs = 0;
    std::thread([&] {
        UniqueFd ns(::open(nsPath(child.pid(), "net").c_str(), O_RDONLY | O_CLOEXEC));
        if (ns.ok() && ::setns(ns.get(), CLONE_NEWNET) == 0) {
            UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
            theirs = cookieOf(s.get());
        }
    }).join();
    ASSERT_NE(theirs, 0U);
    UniqueFd byPid = client_->openSocket(child.pid(), AF_INET, SOCK_STREAM);
    EXPECT_EQ(cookieOf(byPid.get()), theirs);
    EXPECT_NE(::fcntl(byPid.get(), F_GETFD) & FD_CLOEXEC, 0);
    TrackedProcess tracked = client_->track(child.pid());
    UniqueFd onTracked = tracked.openSocket(AF_NETLINK, SOCK_RAW, 0);
    EXPECT_EQ(cookieOf(onTracked.get()), theirs);
    // Made without capabilities, even for root: no packet socket.
    EXPECT_THROW(tracked.openSocket(AF_PACKET, SOCK_RAW, 0x0300), SocketFailed);
    EXPECT_THROW(client_->openSocket(child.pid(), AF_INET, SOCK_STREAM | SOCK_NONBLOCK),
                 InvalidArgument);
    tracked.untrack();
    child.release(0);
    child.reap();
}

}  // namespace
}  // namespace nsfd::test
