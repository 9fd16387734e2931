// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd asks polkit when neither the kernel rule nor nsfdd.conf allows a call:
// a real polkitd (Debian's) on the tests' bus, with the test's rules only,
// callers as real users. Also: polkitd stopped while a call waits on it, and
// polkitd absent.
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "fixture.hpp"
#include "polkit_harness.hpp"

namespace nsfd::test {
namespace {

using Clock = std::chrono::steady_clock;

// nsfdd with no grants and a short polkit timeout.
constexpr const char* kPolkitConfig = R"(
[polkit]
timeout-ms = 3000
)";

// nsfd-test-a may get net namespaces of any process, send signal 0 to
// processes of `other`, and read info only after authentication.
std::string rulesFor(uid_t other) {
    return R"(polkit.addRule(function(action, subject) {
    if (subject.user != "nsfd-test-a") { return polkit.Result.NOT_HANDLED; }
    if (action.id == "org.nsfd1.get-namespace" && action.lookup("namespace") == "net") {
        return polkit.Result.YES;
    }
    if (action.id == "org.nsfd1.send-signal" && action.lookup("uid") == ")" +
           std::to_string(other) + R"(" && action.lookup("signal") == "0") {
        return polkit.Result.YES;
    }
    if (action.id == "org.nsfd1.read-info") { return polkit.Result.AUTH_ADMIN; }
    return polkit.Result.NOT_HANDLED;
});
)";
}

class PolkitDaemonTest : public DaemonTest {
  protected:
    std::string config() const override { return kPolkitConfig; }

    void SetUp() override {
        if (!TestPolkit::installed()) {
            GTEST_SKIP() << "polkitd is not installed (apt-get install polkitd)";
        }
        if (kUser == 0 || kOtherUser == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test-users)";
        }
        DaemonTest::SetUp();
    }

    void TearDown() override {
        polkit_.reset();
        DaemonTest::TearDown();
    }

    // One Manager call as `uid`: "ok" or the D-Bus error name.
    std::string as(uid_t uid, const std::function<void(ManagerProxy&)>& call) {
        return asUser(uid, uid, {}, [&](sdbus::IConnection& bus) {
            ManagerProxy manager(bus, false);
            std::string error = errorNameOf([&] { call(manager); });
            return error.empty() ? std::string("ok") : error;
        });
    }

    std::unique_ptr<TestPolkit> polkit_;
};

TEST_F(PolkitDaemonTest, ARuleDecidesOnTheNamespaceTheTargetsUidAndTheSignal) {
    polkit_ = std::make_unique<TestPolkit>(busAddress(), rulesFor(kOtherUser));
    Child roots = Child::spawn();
    Child others = spawnAs(kOtherUser);
    auto root = static_cast<uint32_t>(roots.pid());
    auto other = static_cast<uint32_t>(others.pid());

    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespace(root, "net"); }), "ok");
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespace(root, "uts"); }), err::kAccessDenied);
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespaces(root, {"net"}); }), "ok");
    EXPECT_EQ(as(kUser,
                 [&](ManagerProxy& m) {
                     m.GetNamespaces(root, {"net", "uts"});
                 }),
              err::kAccessDenied)
        << "each type asked for is one check";
    EXPECT_EQ(as(kOtherUser, [&](ManagerProxy& m) { m.GetNamespace(root, "net"); }),
              err::kAccessDenied);
    EXPECT_NE(daemon_->log().find("decided by: polkit"), std::string::npos) << daemon_->log();

    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.SendSignal(other, 0); }), "ok");
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.SendSignal(other, SIGKILL); }),
              err::kAccessDenied);
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.SendSignal(root, 0); }), err::kAccessDenied);
    for (Child* child : {&roots, &others}) {
        child->release(0);
        child->reap();
    }
}

TEST_F(PolkitDaemonTest, AChallengeWithoutTheInteractiveFlagIsInteractiveAuthorizationRequired) {
    polkit_ = std::make_unique<TestPolkit>(busAddress(), rulesFor(kOtherUser));
    Child roots = Child::spawn();
    auto root = static_cast<uint32_t>(roots.pid());
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetProcessInfo(root); }),
              err::kInteractiveAuthorizationRequired);

    // With the flag and no authentication agent: a plain, named denial.
    auto [status, out] = forkAndRead([&](int fd) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
        if (::setresgid(kUser, kUser, kUser) < 0 || ::setresuid(kUser, kUser, kUser) < 0) {
            ::_exit(127);
        }
        ::execlp("busctl", "busctl", "--allow-interactive-authorization=yes", "call", "org.nsfd1",
                 "/org/nsfd1", "org.nsfd1.Manager", "GetProcessInfo", "u",
                 std::to_string(root).c_str(), nullptr);
        ::_exit(127);
    });
    EXPECT_NE(status, 0);
    EXPECT_NE(out.find("Access denied"), std::string::npos) << out;
    roots.release(0);
    roots.reap();
}

TEST_F(PolkitDaemonTest, WithoutARuleTheActionsDefaultsDecide) {
    polkit_ = std::make_unique<TestPolkit>(busAddress(), "");
    Child roots = Child::spawn();
    auto root = static_cast<uint32_t>(roots.pid());
    // No session here: allow_any (no) applies.
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespace(root, "net"); }), err::kAccessDenied);
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetProcessInfo(root); }), err::kAccessDenied);
    roots.release(0);
    roots.reap();
}

TEST_F(PolkitDaemonTest, WhilePolkitdHangsOthersAreServedAndTheWaitingCallEndsAtTheTimeout) {
    polkit_ = std::make_unique<TestPolkit>(busAddress(), rulesFor(kOtherUser));
    Child roots = Child::spawn();
    Child own = spawnAs(kUser);
    auto root = static_cast<uint32_t>(roots.pid());
    polkit_->pause();

    Clock::time_point start = Clock::now();
    std::string waiting;
    Clock::duration waited{};
    std::thread caller([&] {
        waiting = as(kUser, [&](ManagerProxy& m) { m.GetNamespace(root, "net"); });
        waited = Clock::now() - start;
    });
    // Let the call reach polkit, then see that nsfdd serves root and the kernel rule.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Clock::time_point others = Clock::now();
    sdbus::UnixFd fd = manager_->GetNamespace(root, "uts");
    EXPECT_TRUE(fd.isValid());
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespace(own.pid(), "net"); }), "ok");
    Clock::duration servedIn = Clock::now() - others;
    caller.join();
    polkit_->resume();

    EXPECT_EQ(waiting, err::kAccessDenied);
    EXPECT_LT(servedIn, std::chrono::milliseconds(2500)) << "served while polkit hung";
    EXPECT_GE(waited, std::chrono::milliseconds(2900)) << "denied only at nsfdd's timeout (3 s)";
    EXPECT_NE(daemon_->log().find("did not answer"), std::string::npos) << daemon_->log();
    for (Child* child : {&roots, &own}) {
        child->release(0);
        child->reap();
    }
}

TEST_F(PolkitDaemonTest, WithoutPolkitdTheAnswerIsTodaysDenialWithNoDelay) {
    Child roots = Child::spawn();
    auto root = static_cast<uint32_t>(roots.pid());
    Clock::time_point start = Clock::now();
    EXPECT_EQ(as(kUser, [&](ManagerProxy& m) { m.GetNamespace(root, "net"); }), err::kAccessDenied);
    // Well under the 3 s polkit timeout: nothing waited for polkitd.
    EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(1500));
    EXPECT_NE(daemon_->log().find("polkitd is not running"), std::string::npos) << daemon_->log();
    roots.release(0);
    roots.reap();
}

}  // namespace
}  // namespace nsfd::test
