// SPDX-License-Identifier: LGPL-2.1-or-later
// No user takes nsfd away from the others (issue 22): whatever ordinary users
// do within the bus's own limits, nsfdd keeps its bus connection, and root
// and a well-behaved user are still answered. On a real dbus-daemon with its
// built-in limits (256 connections per uid, 512 match rules per connection).
#include <grp.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "crowd.hpp"
#include "fixture.hpp"
#include "polkit_harness.hpp"

namespace nsfd::test {
namespace {

class BusLimitsTest : public DaemonTest {
  protected:
    void SetUp() override {
        if (kUser == 0 || kOtherUser == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test-users)";
        }
        if (testBusKind() != BusKind::DbusDaemon) {
            GTEST_SKIP() << "the numbers are dbus-daemon's";
        }
        DaemonTest::SetUp();
    }

    // nsfdd still runs, with the same pid, and answers root.
    void expectNsfddServesRoot() {
        EXPECT_EQ(::waitpid(daemon_->pid(), nullptr, WNOHANG), 0) << "nsfdd exited";
        EXPECT_EQ(errorNameOf([&] { manager_->ListProcesses(); }), "");
        auto pid = static_cast<uint32_t>(::getpid());
        expectSameNamespace(manager_->GetNamespace(pid, "uts"), nsPath(::getpid(), "uts"));
        EXPECT_EQ(daemon_->log().find("Lost the bus connection"), std::string::npos);
    }
};

// Issue 22, scenario 1: each of two users holds the 256 connections the bus
// allows a uid, and each connection calls nsfdd once. nsfdd used to add a
// bus match per caller (sd_bus_track) until the bus refused one, and sd-bus
// then dropped nsfdd's connection.
TEST_F(BusLimitsTest, TwoUsersWithEveryConnectionTheBusAllowsCallingOnceEachLeaveNsfddOnTheBus) {
    Crowd a(kUser, 300, listProcesses);
    auto [openedA, answeredA, errorA] = a.awaitReport();
    Crowd b(kOtherUser, 300, listProcesses);
    auto [openedB, answeredB, errorB] = b.awaitReport();
    // The bus's limit (max_connections_per_user), not ours: 512 callers in all.
    EXPECT_EQ(openedA, 256);
    EXPECT_EQ(openedB, 256);
    EXPECT_EQ(answeredA, openedA) << errorA;
    EXPECT_EQ(answeredB, openedB) << errorB;
    expectNsfddServesRoot();
    // Callers come and go: a new crowd is answered too.
    a.release();
    Crowd again(kUser, 300, listProcesses);
    auto [openedAgain, answeredAgain, errorAgain] = again.awaitReport();
    EXPECT_EQ(answeredAgain, openedAgain) << errorAgain;
    expectNsfddServesRoot();
}

// Subscribers need a match each: their number is bounded per uid, and root
// still subscribes when the others have taken their shares.
TEST_F(BusLimitsTest, SubscribersAreBoundedPerUidAndRootStillSubscribes) {
    Crowd a(kUser, 40, subscribe);
    auto [openedA, answeredA, errorA] = a.awaitReport();
    EXPECT_EQ(openedA, 40);
    EXPECT_EQ(answeredA, 16) << "16 subscribers per uid";
    EXPECT_EQ(errorA, err::kLimitExceeded);
    Crowd b(kOtherUser, 4, subscribe);
    auto [openedB, answeredB, errorB] = b.awaitReport();
    EXPECT_EQ(answeredB, openedB) << errorB;
    auto root = connectToBus();
    EXPECT_EQ(errorNameOf([&] { ManagerProxy(*root, /*subscribe=*/true); }), "");
    // A subscriber that hangs up gives its place back.
    a.release();
    Crowd again(kUser, 16, subscribe);
    auto [openedAgain, answeredAgain, errorAgain] = again.awaitReport();
    EXPECT_EQ(answeredAgain, openedAgain) << errorAgain;
    expectNsfddServesRoot();
}

// -- the fd store: each user's share, root's reserve --

// Issue 22, scenario 3: a tracks its own short-lived processes, one after
// another. Its quota (1024 by default) used to count only live ones, while a
// reaped process keeps its slot in the fd store for its retention (60 s): a
// filled all 16,383 slots, and b and root got LimitExceeded.
TEST_F(BusLimitsTest, OneUsersShortLivedProcessesLeaveRoomInTheFdStoreForOthersAndRoot) {
    std::string result = asUser(kUser, kUser, {}, [&](sdbus::IConnection& bus) {
        ManagerProxy manager(bus, /*subscribe=*/false);
        int tracked = 0;
        std::string error;
        for (; tracked < 17'000; ++tracked) {
            pid_t pid = ::fork();
            if (pid == 0) {
                ::_exit(0);
            }
            // A zombie until we reap it: tracked, then reaped.
            error = errorNameOf([&] { manager.TrackProcess(static_cast<uint32_t>(pid)); });
            ::waitpid(pid, nullptr, 0);
            if (!error.empty()) {
                break;
            }
        }
        return std::to_string(tracked) + " " + error;
    });
    EXPECT_EQ(result, "1024 " + std::string(err::kLimitExceeded)) << "a's quota counts reaped ones";
    Child bs = spawnAs(kOtherUser);
    EXPECT_EQ(asUser(kOtherUser, kOtherUser, {},
                     [&](sdbus::IConnection& bus) {
                         return errorNameOf([&] {
                             ManagerProxy(bus, false).TrackProcess(static_cast<uint32_t>(bs.pid()));
                         });
                     }),
              "");
    Child roots = Child::spawn();
    EXPECT_EQ(errorNameOf([&] { manager_->TrackProcess(static_cast<uint32_t>(roots.pid())); }), "");
    for (Child* child : {&bs, &roots}) {
        child->release(0);
        child->reap();
    }
}

// -- polkit checks queued fairly, denials logged without a flood --

// nsfd-test-a may get the net namespace of any process (a polkit rule);
// nobody else is allowed anything (the actions' defaults: no). polkitd logs
// each check about nsfd-test-b, so that a test can count them.
constexpr const char* kNetForA = R"(polkit.addRule(function(action, subject) {
    if (subject.user == "nsfd-test-b") {
        polkit.log("nsfd-check-of-b");
    }
    if (subject.user == "nsfd-test-a" && action.id == "org.nsfd1.get-namespace" &&
        action.lookup("namespace") == "net") {
        return polkit.Result.YES;
    }
    return polkit.Result.NOT_HANDLED;
});
)";

class PolkitFloodTest : public BusLimitsTest {
  protected:
    void SetUp() override {
        if (!TestPolkit::installed()) {
            GTEST_SKIP() << "polkitd is not installed (apt-get install polkitd)";
        }
        BusLimitsTest::SetUp();
        if (!IsSkipped()) {
            polkit_ = std::make_unique<TestPolkit>(busAddress(), kNetForA, /*verbose=*/true);
        }
    }
    void TearDown() override {
        polkit_.reset();
        BusLimitsTest::TearDown();
    }

    std::unique_ptr<TestPolkit> polkit_;
};

// Issue 22, scenario 2: user b keeps 2,048 calls that need polkit in flight
// (16 connections of 128, dbus-daemon's max_replies_per_connection; each
// answered call is made again at once). nsfdd
// used to ask polkitd about all of them at once: its own connection ran out of
// pending replies on the bus, and a's calls, which a rule allows, were denied
// with LimitsExceeded; the denials filled the log.
TEST_F(PolkitFloodTest, AUserARuleAllowsIsAnsweredYesWhileAnotherFloodsAndTheLogStaysSmall) {
    Child target = Child::spawn();
    Crowd flood(kOtherUser, 16, keepInFlight(target.pid(), 128), /*pump=*/true);
    auto [opened, sent, error] = flood.awaitReport();
    ASSERT_EQ(opened, 16) << error;
    // a, meanwhile: every call answered yes, promptly.
    std::string result = asUser(kUser, kUser, {}, [&](sdbus::IConnection& bus) {
        ManagerProxy manager(bus, /*subscribe=*/false);
        std::string out;
        for (int i = 0; i < 20; ++i) {
            auto start = std::chrono::steady_clock::now();
            std::string name = errorNameOf(
                [&] { manager.GetNamespace(static_cast<uint32_t>(target.pid()), "net"); });
            out += name.empty() ? "ok" : name;
            if (std::chrono::steady_clock::now() - start > std::chrono::seconds(5)) {
                out += "(slow)";
            }
            out += " ";
        }
        return out;
    });
    std::string twentyYes;
    for (int i = 0; i < 20; ++i) {
        twentyYes += "ok ";
    }
    EXPECT_EQ(result, twentyYes);
    flood.release();  // its checks still waiting are dropped, not asked
    expectNsfddServesRoot();
    // At most 10 lines a window for b; b's flood lasts less than two windows here.
    std::string log = daemon_->log();
    std::string deniedB = "Denied uid " + std::to_string(kOtherUser) + " ";
    std::size_t lines = 0;
    for (std::size_t at = log.find(deniedB); at != std::string::npos;
         at = log.find(deniedB, at + 1)) {
        ++lines;
    }
    EXPECT_LE(lines, 30U);
    EXPECT_GE(lines, 1U);
    target.release(0);
    target.reap();
}

// -- a check whose caller has gone is dropped --

// The checks polkitd was asked about nsfd-test-b (the rules log each one).
std::size_t checksOfB(const TestPolkit& polkit) {
    std::string log = polkit.log();
    std::size_t n = 0;
    for (std::size_t at = log.find("nsfd-check-of-b"); at != std::string::npos;
         at = log.find("nsfd-check-of-b", at + 1)) {
        ++n;
    }
    return n;
}

std::string varlinkGetNamespace(pid_t pid, const char* type) {
    return std::string(R"({"method":"org.nsfd1.Manager.GetNamespace","parameters":{"pid":)") +
           std::to_string(pid) + R"(,"type":")" + type + "\"}}" + '\0';
}

// Whether every byte written to `socket` has been read by the other end
// (SIOCOUTQ of an AF_UNIX socket: what the peer has not taken yet).
bool allRead(int socket) {
    int unread = 0;
    return ::ioctl(socket, SIOCOUTQ, &unread) == 0 && unread == 0;
}

// As `uid`, in a child: `connections` Varlink connections to `path`, each with
// `calls` GetNamespace of `pid` sent at once; once nsfdd has read them all,
// every connection is closed, "ok" reported, and the process lives on until
// the destructor kills it (only the hang-up says the caller has gone).
class VarlinkHangUp {
  public:
    VarlinkHangUp(uid_t uid, const std::string& path, int connections, int calls, pid_t pid)
        : child_([&](int report) {
              reportAndStay(report, run(uid, path, connections, calls, pid));
          }) {}

    std::string awaitReport() { return child_.awaitLine("the Varlink callers to hang up"); }

  private:
    static std::string run(uid_t uid, const std::string& path, int connections, int calls,
                           pid_t pid) {
        if (::setgroups(0, nullptr) < 0 || ::setresgid(uid, uid, uid) < 0 ||
            ::setresuid(uid, uid, uid) < 0) {
            return "setuid failed";
        }
        std::vector<UniqueFd> sockets;
        std::string bytes;
        for (int i = 0; i < calls; ++i) {
            bytes += varlinkGetNamespace(pid, "uts");
        }
        for (int i = 0; i < connections; ++i) {
            UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
            sockaddr_un address{};
            address.sun_family = AF_UNIX;
            (void)std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
            if (::connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) <
                    0 ||
                ::send(socket.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) !=
                    static_cast<ssize_t>(bytes.size())) {
                return "connection " + std::to_string(i) + ": " + std::strerror(errno);
            }
            sockets.push_back(std::move(socket));
        }
        auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
        while (!std::all_of(sockets.begin(), sockets.end(),
                            [](const UniqueFd& socket) { return allRead(socket.get()); })) {
            if (std::chrono::steady_clock::now() > deadline) {
                return "nsfdd did not read the calls";
            }
            ::usleep(10'000);
        }
        sockets.clear();
        return "ok";
    }

    ReportingChild child_;
};

// `calls` GetNamespace of `pid` on one Varlink connection at once; returns
// the error of each reply ("" for an fd), in order, space-separated.
std::string varlinkCalls(const std::string& path, int calls, pid_t pid) {
    UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    (void)std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
    std::string bytes;
    for (int i = 0; i < calls; ++i) {
        bytes += varlinkGetNamespace(pid, "uts");
    }
    if (::connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0 ||
        ::send(socket.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(bytes.size())) {
        return std::string("send: ") + std::strerror(errno);
    }
    std::string received, out;
    int replies = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (replies < calls && std::chrono::steady_clock::now() < deadline) {
        pollfd pfd{socket.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 100) != 1) {
            continue;
        }
        char buf[4096];
        ssize_t n = ::recv(socket.get(), buf, sizeof(buf), MSG_CMSG_CLOEXEC);
        if (n <= 0) {
            break;
        }
        received.append(buf, static_cast<std::size_t>(n));
        for (std::size_t end; (end = received.find('\0')) != std::string::npos;) {
            auto reply = nlohmann::json::parse(received.substr(0, end));
            received.erase(0, end + 1);
            out += reply.value("error", "") + " ";
            ++replies;
        }
    }
    return out;
}

// As `uid`, in a child: varlinkCalls().
std::string varlinkCallsAs(uid_t uid, const std::string& path, int calls, pid_t pid) {
    return asUser(uid, uid, {},
                  [&](sdbus::IConnection&) { return varlinkCalls(path, calls, pid); });
}

std::string repeated(const std::string& word, int times) {
    std::string out;
    for (int i = 0; i < times; ++i) {
        out += word + " ";
    }
    return out;
}

class PolkitHangUpTest : public PolkitFloodTest {
  protected:
    std::string varlinkPath() const override { return dir_.socket(); }

    SocketDir dir_;
};

// b has 1,024 checks at polkitd or waiting for it (16 connections of 64
// calls; polkitd is paused, so they stay) and hangs up, its process alive.
// Its checks waiting are dropped at once: b's next 20 calls find room
// (before, the 1,016 waiting took all but 8 of b's 1,024 places, and the
// others were refused with LimitExceeded), and polkitd is asked about none
// of the dropped ones (before, about each in turn).
TEST_F(PolkitHangUpTest, AVarlinkCallerThatHangsUpFreesItsPlacesAtOnceAndPolkitdIsNotAskedAboutIt) {
    const int fdsBefore = daemon_->openFdCount();
    Child target = Child::spawn();
    polkit_->pause();
    {
        VarlinkHangUp flood(kOtherUser, dir_.socket(), 16, 64, target.pid());
        ASSERT_EQ(flood.awaitReport(), "ok");
        std::string again;
        std::thread caller(
            [&] { again = varlinkCallsAs(kOtherUser, dir_.socket(), 20, target.pid()); });
        std::this_thread::sleep_for(std::chrono::milliseconds(500));  // b's 20 calls wait
        polkit_->resume();
        caller.join();
        // polkitd's no to each; none refused for want of room.
        EXPECT_EQ(again, repeated(std::string(varlinkErrorName(ErrorKind::AccessDenied)), 20));
        // a, whom a rule allows, is answered yes.
        EXPECT_EQ(asUser(kUser, kUser, {},
                         [&](sdbus::IConnection& bus) {
                             return errorNameOf([&] {
                                 ManagerProxy(bus, false)
                                     .GetNamespace(static_cast<uint32_t>(target.pid()), "net");
                             });
                         }),
                  "");
    }
    // The 8 in flight when b hung up, and b's 20 since: nothing of the 1,016 dropped.
    EXPECT_LE(checksOfB(*polkit_), 8U + 20U);
    EXPECT_GE(checksOfB(*polkit_), 20U);
    expectNsfddServesRoot();
    EXPECT_TRUE(waitUntil([&] { return daemon_->openFdCount() <= fdsBefore; }))
        << daemon_->openFdCount() << " fds, " << fdsBefore << " before";
    target.release(0);
    target.reap();
}

// Sends `calls` GetNamespace(pid, "uts") without waiting for their replies,
// then pings nsfdd: once the ping is answered, nsfdd has taken every call.
Crowd::Call sendThenPing(pid_t pid, int calls) {
    return [pid, calls](sdbus::IProxy& proxy) {
        for (int i = 0; i < calls; ++i) {
            auto call = proxy.createMethodCall(nsfd::dbus::kManagerInterface, "GetNamespace");
            call << static_cast<uint32_t>(pid) << std::string("uts");
            (void)proxy.callMethod(
                call, [](sdbus::MethodReply&, const sdbus::Error*) {}, std::chrono::minutes(5));
        }
        auto ping = proxy.createMethodCall("org.freedesktop.DBus.Peer", "Ping");
        proxy.callMethod(ping);
    };
}

// The unique names on the bus.
std::size_t namesOnTheBus(sdbus::IConnection& bus) {
    auto proxy = sdbus::createProxy(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    std::vector<std::string> names;
    proxy->callMethod("ListNames").onInterface("org.freedesktop.DBus").storeResultsTo(names);
    return static_cast<std::size_t>(
        std::count_if(names.begin(), names.end(),
                      [](const std::string& name) { return !name.empty() && name[0] == ':'; }));
}

// The same on the bus: b's 16 connections leave the bus (its process exits)
// while 1,016 of their checks wait and 8 are at polkitd. nsfdd hears of
// their departure (one NameOwnerChanged match) and drops them at once;
// before, they stayed until their turn came, which polkitd's pause delays.
TEST_F(PolkitHangUpTest, BusCallersThatLeaveTheBusFreeTheirPlacesAtOnce) {
    const int fdsBefore = daemon_->openFdCount();
    const std::size_t names = namesOnTheBus(*connection_);
    Child target = Child::spawn();
    polkit_->pause();
    Crowd flood(kOtherUser, 16, sendThenPing(target.pid(), 64));
    auto [opened, pinged, error] = flood.awaitReport();
    ASSERT_EQ(opened, 16) << error;
    ASSERT_EQ(pinged, 16) << error;
    flood.release();
    // The bus has told nsfdd of their departure before it takes b's next calls.
    EXPECT_TRUE(waitUntil([&] { return namesOnTheBus(*connection_) <= names; }));
    std::string again;
    std::thread caller([&] {
        again = asUser(kOtherUser, kOtherUser, {}, [&](sdbus::IConnection& bus) {
            auto proxy = sdbus::createProxy(bus, nsfd::dbus::kBusName, nsfd::dbus::kManagerPath);
            std::string out;
            int replies = 0;
            for (int i = 0; i < 20; ++i) {
                auto call = proxy->createMethodCall(nsfd::dbus::kManagerInterface, "GetNamespace");
                call << static_cast<uint32_t>(target.pid()) << std::string("uts");
                (void)proxy->callMethod(
                    call,
                    [&](sdbus::MethodReply&, const sdbus::Error* e) {
                        out += (e != nullptr ? e->getName() : std::string()) + " ";
                        ++replies;
                    },
                    std::chrono::minutes(1));
            }
            test::waitUntil(
                bus, [&] { return replies == 20; }, std::chrono::seconds(20));
            return out;
        });
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // b's 20 calls wait
    polkit_->resume();
    caller.join();
    EXPECT_EQ(again, repeated(err::kAccessDenied, 20));
    EXPECT_LE(checksOfB(*polkit_), 8U + 20U);
    expectNsfddServesRoot();
    EXPECT_TRUE(waitUntil([&] { return daemon_->openFdCount() <= fdsBefore; }))
        << daemon_->openFdCount() << " fds, " << fdsBefore << " before";
    target.release(0);
    target.reap();
}

// -- the uids of a user namespace count as its owner --

// A container of `owner`'s: a user namespace it owns, whose uids (and gids)
// 1, 2 and 3 are 1, 2 and 3 outside (daemon, bin and sys, which every Debian
// has: the bus and polkitd look a caller's uid up, and refuse one they cannot
// find). Root writes the maps, as newuidmap would for a user's subordinate uids.
class UserNamespaceOf {
  public:
    static constexpr uid_t kUids = 3;
    // What uid `uid` (1 to kUids) of the namespace is outside.
    static uid_t outside(uid_t uid) { return uid; }

    explicit UserNamespaceOf(uid_t owner)
        : holder_(Child::spawn([owner] {
              if (::setgroups(0, nullptr) < 0 || ::setresgid(owner, owner, owner) < 0 ||
                  ::setresuid(owner, owner, owner) < 0 || ::unshare(CLONE_NEWUSER) < 0) {
                  return errno;
              }
              return 0;
          })) {
        std::string map;
        for (uid_t uid = 1; uid <= kUids; ++uid) {
            map += std::to_string(uid) + " " + std::to_string(outside(uid)) + " 1\n";
        }
        for (const char* file : {"uid_map", "gid_map"}) {
            std::string path = "/proc/" + std::to_string(holder_.pid()) + "/" + file;
            UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
            if (!fd.ok() ||
                ::write(fd.get(), map.data(), map.size()) != static_cast<ssize_t>(map.size())) {
                throw std::system_error(errno, std::generic_category(), "write " + path);
            }
        }
        std::string path = "/proc/" + std::to_string(holder_.pid()) + "/ns/user";
        namespace_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!namespace_.ok()) {
            throw std::system_error(errno, std::generic_category(), "open " + path);
        }
    }

    // In a forked (single-threaded) child of the test: becomes uid `uid` of
    // the namespace. False, with errno, if a step fails.
    bool enter(uid_t uid) const {
        return ::setns(namespace_.get(), CLONE_NEWUSER) == 0 && ::setgroups(0, nullptr) == 0 &&
               ::setresgid(uid, uid, uid) == 0 && ::setresuid(uid, uid, uid) == 0;
    }

  private:
    Child holder_;  // keeps the namespace; killed and reaped with it
    UniqueFd namespace_;
};

// A process of the container as its uid `uid`: runs `fn`, reports what it
// returned, and lives on, holding the bus connections `fn` kept, until
// destroyed.
class InUserNamespace {
  public:
    using Connections = std::vector<std::unique_ptr<sdbus::IConnection>>;

    InUserNamespace(const UserNamespaceOf& container, uid_t uid,
                    const std::function<std::string(Connections&)>& fn) {
        (void)busAddress();  // started, its address set, before the fork
        child_.emplace([&](int report) {
            Connections kept;
            std::string result;
            try {
                result =
                    container.enter(uid) ? fn(kept) : std::string("enter: ") + std::strerror(errno);
            } catch (const std::exception& e) {
                result = std::string("exception: ") + e.what();
            }
            reportAndStay(report, result);
        });
    }

    std::string awaitReport() {
        return child_->awaitLine("a process in a user namespace to report");
    }

  private:
    std::optional<ReportingChild> child_;
};

class NamespacedCallersTest : public DaemonTest {
  protected:
    void SetUp() override {
        if (kUser == 0 || kOtherUser == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test-users)";
        }
        DaemonTest::SetUp();
    }
    std::string varlinkPath() const override { return dir_.socket(); }

    // Stops nsfdd (which then writes what its denial log left out) and
    // returns its log.
    std::string stopAndReadLog() {
        int status = daemon_->stop();
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
        std::string log = daemon_->log();
        daemon_.reset();
        return log;
    }

    SocketDir dir_;
};

// The lines of nsfdd's log that deny a uid in [first, last] ("Denied uid U ...").
std::size_t denialLinesOf(const std::string& log, uid_t first, uid_t last) {
    const std::string tag = "Denied uid ";
    std::size_t lines = 0;
    for (std::size_t at = log.find(tag); at != std::string::npos; at = log.find(tag, at + 1)) {
        unsigned long uid = std::strtoul(log.c_str() + at + tag.size(), nullptr, 10);
        lines += uid >= first && uid <= last ? 1 : 0;
    }
    return lines;
}

// The denials of `account` its lines left out: the sum of N over its
// "... and N more denials of uid U..." lines.
std::size_t leftOutDenialsOf(const std::string& log, uid_t account) {
    const std::string tag = "... and ";
    std::size_t sum = 0;
    for (std::size_t at = log.find(tag); at != std::string::npos; at = log.find(tag, at + 1)) {
        std::size_t end = log.find('\n', at);
        std::string line = log.substr(at + tag.size(), end == std::string::npos ? end : end - at);
        std::string digits;
        std::size_t i = 0;
        for (; i < line.size() &&
               (std::isdigit(static_cast<unsigned char>(line[i])) != 0 || line[i] == ',');
             ++i) {
            if (line[i] != ',') {
                digits += line[i];
            }
        }
        std::size_t of = line.find(" of uid ", i);
        if (digits.empty() || of == std::string::npos) {
            continue;
        }
        if (std::strtoul(line.c_str() + of + 8, nullptr, 10) == account) {
            sum += std::stoul(digits);
        }
    }
    return sum;
}

// Denials are rate-limited per account, as every per-user bound: three uids
// of nsfd-test-a's container, each denied 10 times, share a's 10 lines, and
// the line that counts the other 20 names a (keyed by uid, each uid had 10
// lines of its own).
TEST_F(NamespacedCallersTest, TheUidsOfAUserNamespaceShareItsOwnersDenialLines) {
    Child target = Child::spawn();  // root's: nobody in the container may see into it
    {
        UserNamespaceOf container(kUser);
        for (uid_t uid = 1; uid <= UserNamespaceOf::kUids; ++uid) {
            InUserNamespace caller(container, uid, [&](InUserNamespace::Connections&) {
                return varlinkCalls(dir_.socket(), 10, target.pid());
            });
            EXPECT_EQ(caller.awaitReport(),
                      repeated(std::string(varlinkErrorName(ErrorKind::AccessDenied)), 10))
                << "uid " << uid << " of the container";
        }
    }
    std::string log = stopAndReadLog();
    EXPECT_EQ(denialLinesOf(log, UserNamespaceOf::outside(1),
                            UserNamespaceOf::outside(UserNamespaceOf::kUids)),
              10U)
        << log;
    EXPECT_EQ(leftOutDenialsOf(log, kUser), 20U) << log;
    EXPECT_NE(
        log.find("; uid " + std::to_string(kUser) + ", owner of the caller's user namespace)"),
        std::string::npos)
        << "a denial line names the account";
    target.release(0);
    target.reap();
}

// Subscribers of the uids of nsfd-test-a's container count as a's: three
// uids with 8 connections each get a's 16 places in all (keyed by uid, 24),
// a itself has none left, and b has its own.
TEST_F(NamespacedCallersTest, TheUidsOfAUserNamespaceShareItsOwnersSubscribers) {
    UserNamespaceOf container(kUser);
    std::vector<std::unique_ptr<InUserNamespace>> callers;
    int subscribed = 0;
    std::string refusal;
    for (uid_t uid = 1; uid <= UserNamespaceOf::kUids; ++uid) {
        callers.push_back(std::make_unique<InUserNamespace>(
            container, uid, [](InUserNamespace::Connections& kept) {
                int answered = 0;
                std::string firstError = "-";
                for (int i = 0; i < 8; ++i) {
                    kept.push_back(connectToBus());
                    auto proxy = sdbus::createProxy(*kept.back(), nsfd::dbus::kBusName,
                                                    nsfd::dbus::kManagerPath);
                    std::string error = errorNameOf([&] { subscribe(*proxy); });
                    answered += error.empty() ? 1 : 0;
                    if (!error.empty() && firstError == "-") {
                        firstError = error;
                    }
                }
                return std::to_string(answered) + " " + firstError;
            }));
        std::istringstream report(callers.back()->awaitReport());
        int answered = -1;
        std::string error;
        ASSERT_TRUE(report >> answered >> error) << "uid " << uid << " of the container";
        subscribed += answered;
        if (error != "-" && refusal.empty()) {
            refusal = error;
        }
    }
    EXPECT_EQ(subscribed, 16) << "a's share, 16 subscribers";
    EXPECT_EQ(refusal, err::kLimitExceeded);
    auto subscribeAs = [&](uid_t uid) {
        return asUser(uid, uid, {}, [](sdbus::IConnection& bus) {
            auto proxy = sdbus::createProxy(bus, nsfd::dbus::kBusName, nsfd::dbus::kManagerPath);
            return errorNameOf([&] { subscribe(*proxy); });
        });
    };
    EXPECT_EQ(subscribeAs(kUser), err::kLimitExceeded) << "a's share is taken by its container";
    EXPECT_EQ(subscribeAs(kOtherUser), "");
    // The container's subscribers gone, a subscribes again.
    callers.clear();
    EXPECT_TRUE(waitUntil([&] { return subscribeAs(kUser).empty(); }));
}

// Every check about a caller of nsfd-test-b's container is logged by polkitd,
// so that a test can count what nsfdd asked it.
constexpr const char* kLogSandboxedChecks = R"(polkit.addRule(function(action, subject) {
    if (action.lookup("caller-sandboxed") == "true") {
        polkit.log("nsfd-check-of-a-sandbox");
    }
    return polkit.Result.NOT_HANDLED;
});
)";

class NamespacedPolkitTest : public NamespacedCallersTest {
  protected:
    void SetUp() override {
        if (!TestPolkit::installed()) {
            GTEST_SKIP() << "polkitd is not installed (apt-get install polkitd)";
        }
        NamespacedCallersTest::SetUp();
        if (!IsSkipped()) {
            polkit_ = std::make_unique<TestPolkit>(busAddress(), kLogSandboxedChecks,
                                                   /*verbose=*/true);
        }
    }
    void TearDown() override {
        polkit_.reset();
        NamespacedCallersTest::TearDown();
    }

    std::size_t checksOfSandboxes() const {
        std::string log = polkit_->log();
        std::size_t n = 0;
        for (std::size_t at = log.find("nsfd-check-of-a-sandbox"); at != std::string::npos;
             at = log.find("nsfd-check-of-a-sandbox", at + 1)) {
            ++n;
        }
        return n;
    }

    std::unique_ptr<TestPolkit> polkit_;
};

// The polkit decisions in flight are bounded per account: three uids of
// nsfd-test-b's container, 16 calls each, while polkitd is paused, get b's 8
// decisions at polkitd in all (keyed by uid, 24). They hang up; what waited
// is dropped, so polkitd, resumed, is asked about those 8 alone.
TEST_F(NamespacedPolkitTest, TheUidsOfAUserNamespaceShareItsOwnersPolkitChecksInFlight) {
    Child target = Child::spawn();
    polkit_->pause();
    {
        UserNamespaceOf container(kOtherUser);
        std::vector<std::unique_ptr<InUserNamespace>> callers;
        for (uid_t uid = 1; uid <= UserNamespaceOf::kUids; ++uid) {
            callers.push_back(std::make_unique<InUserNamespace>(
                container, uid, [&](InUserNamespace::Connections&) {
                    UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
                    sockaddr_un address{};
                    address.sun_family = AF_UNIX;
                    (void)std::snprintf(address.sun_path, sizeof(address.sun_path), "%s",
                                        dir_.socket().c_str());
                    std::string bytes;
                    for (int i = 0; i < 16; ++i) {
                        bytes += varlinkGetNamespace(target.pid(), "uts");
                    }
                    if (::connect(socket.get(), reinterpret_cast<sockaddr*>(&address),
                                  sizeof(address)) < 0 ||
                        ::send(socket.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) !=
                            static_cast<ssize_t>(bytes.size())) {
                        return std::string("send: ") + std::strerror(errno);
                    }
                    auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
                    while (!allRead(socket.get())) {
                        if (std::chrono::steady_clock::now() > deadline) {
                            return std::string("nsfdd did not read the calls");
                        }
                        ::usleep(10'000);
                    }
                    return std::string("ok");  // and hangs up, alive
                }));
            EXPECT_EQ(callers.back()->awaitReport(), "ok") << "uid " << uid << " of the container";
        }
        // nsfdd has sent to polkitd what it was going to before the callers
        // hung up: the bus has it queued for polkitd.
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        // The callers' processes live on: polkitd checks its subjects.
        polkit_->resume();
        EXPECT_TRUE(waitUntil([&] { return checksOfSandboxes() >= 8; })) << polkit_->log();
        std::this_thread::sleep_for(std::chrono::seconds(1));  // nothing more comes
        EXPECT_EQ(checksOfSandboxes(), 8U) << "b's 8 decisions in flight, whichever uid asked";
    }
    EXPECT_EQ(errorNameOf([&] { manager_->ListProcesses(); }), "");
    target.release(0);
    target.reap();
}

class NamespacedTrackingTest : public NamespacedCallersTest {
  protected:
    std::string config() const override { return "[limits]\ntracked-per-user = 2\n"; }

    // Uids 1 and 2 of `container` each track their own process over the bus,
    // and stay connected: nsfd-test-a's quota of 2, used up.
    static std::vector<std::unique_ptr<InUserNamespace>> eachTracksItself(
        const UserNamespaceOf& container) {
        std::vector<std::unique_ptr<InUserNamespace>> trackers;
        for (uid_t uid = 1; uid <= 2; ++uid) {
            trackers.push_back(std::make_unique<InUserNamespace>(
                container, uid, [](InUserNamespace::Connections& kept) {
                    kept.push_back(connectToBus());
                    ManagerProxy manager(*kept.back(), /*subscribe=*/false);
                    return "tracked:" + errorNameOf([&] {
                               manager.TrackProcess(static_cast<uint32_t>(::getpid()));
                           });
                }));
            EXPECT_EQ(trackers.back()->awaitReport(), "tracked:")
                << "uid " << uid << " of the container";
        }
        return trackers;
    }
};

// Trackings restored after a restart count against the account that made
// them: uids 1 and 2 of nsfd-test-a's container track a process each, a's
// quota of 2. After a restart a still has no room (before, the fd store did
// not say whose they were, the restored trackings counted against uids 1
// and 2 outside, and a tracked two more).
TEST_F(NamespacedTrackingTest, RestoredTrackingsCountAgainstTheirAccountAfterARestart) {
    UserNamespaceOf container(kUser);
    auto trackers = eachTracksItself(container);
    Child own = spawnAs(kUser);
    auto aTracksItsOwn = [&] {
        return asUser(kUser, kUser, {}, [&](sdbus::IConnection& bus) {
            return errorNameOf([&] {
                ManagerProxy(bus, /*subscribe=*/false)
                    .TrackProcess(static_cast<uint32_t>(own.pid()));
            });
        });
    };
    EXPECT_EQ(aTracksItsOwn(), err::kLimitExceeded) << "before the restart";
    Daemon::FdStore store = daemon_->takeFdStore();
    daemon_->kill9();
    daemon_ = std::make_unique<Daemon>(busAddress(),
                                       Daemon::Options{config(), std::move(store), "debug", 0, ""});
    EXPECT_EQ(manager_->Get(nsfd::dbus::kManagerInterface, "TrackedProcesses").get<uint32_t>(), 2U);
    EXPECT_EQ(aTracksItsOwn(), err::kLimitExceeded) << "the restored trackings are a's";
    own.release(0);
    own.reap();
}

// An older nsfdd's store has the same state table and no "accounts": a newer
// nsfdd restores every tracking from it, each counted against its tracker's
// own uid, as the older nsfdd counted it.
TEST_F(NamespacedTrackingTest, AStoreWithoutAccountsCountsEachTrackingAsItsTrackersUid) {
    UserNamespaceOf container(kUser);
    auto trackers = eachTracksItself(container);
    Daemon::FdStore store = daemon_->takeFdStore();
    daemon_->kill9();
    ASSERT_EQ(store.erase("accounts"), 1U);
    daemon_ = std::make_unique<Daemon>(busAddress(),
                                       Daemon::Options{config(), std::move(store), "debug", 0, ""});
    EXPECT_EQ(manager_->Get(nsfd::dbus::kManagerInterface, "TrackedProcesses").get<uint32_t>(), 2U);
    Child own = spawnAs(kUser);
    EXPECT_EQ(asUser(kUser, kUser, {},
                     [&](sdbus::IConnection& bus) {
                         return errorNameOf([&] {
                             ManagerProxy(bus, /*subscribe=*/false)
                                 .TrackProcess(static_cast<uint32_t>(own.pid()));
                         });
                     }),
              "")
        << "a's quota holds none of the restored trackings";
    std::vector<std::string> names = daemon_->fdStoreNames();
    EXPECT_EQ(std::count(names.begin(), names.end(), "accounts"), 1)
        << "a new one, kept from now on";
    own.release(0);
    own.reap();
}

}  // namespace
}  // namespace nsfd::test
