// SPDX-License-Identifier: LGPL-2.1-or-later
// No user takes nsfd away from the others (issue 22): whatever ordinary users
// do within the bus's own limits, nsfdd keeps its bus connection, and root
// and a well-behaved user are still answered. On a real dbus-daemon with its
// built-in limits (256 connections per uid, 512 match rules per connection).
#include <grp.h>
#include <poll.h>
#include <sys/wait.h>

#include <sstream>

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
// nobody else is allowed anything (the actions' defaults: no).
constexpr const char* kNetForA = R"(polkit.addRule(function(action, subject) {
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
            polkit_ = std::make_unique<TestPolkit>(busAddress(), kNetForA);
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

}  // namespace
}  // namespace nsfd::test
