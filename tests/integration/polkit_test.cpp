// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd's polkit client against a real polkitd on a private bus, with real
// users as subjects: what rules and defaults answer, and what happens when
// polkitd hangs or is not there.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/close_range.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include "child.hpp"
#include "core/event_loop.hpp"
#include "dbus/bus.hpp"
#include "harness.hpp"
#include "polkit/polkit.hpp"
#include "polkit_harness.hpp"

namespace nsfd::test {
namespace {

using daemon::PolkitAnswer;
using daemon::PolkitBusName;
using daemon::PolkitClient;
using daemon::PolkitProcess;
using daemon::PolkitRequest;
using daemon::PolkitResult;
using namespace std::chrono_literals;

uid_t uidOf(const char* name) noexcept {
    struct passwd* pw = ::getpwnam(name);
    return pw == nullptr ? 0 : pw->pw_uid;
}
const uid_t kUserA = uidOf("nsfd-test-a");
const uid_t kUserB = uidOf("nsfd-test-b");

// One bus for the program; its first connections open what sd-bus keeps for
// the life of a process, before any test counts fds.
class PolkitEnvironment : public ::testing::Environment {
  public:
    void SetUp() override {
        bus_ = std::make_unique<TestBus>(BusKind::DbusDaemon);
        ::setenv("DBUS_SYSTEM_BUS_ADDRESS", bus_->address().c_str(), 1);
        if (TestPolkit::installed()) {
            TestPolkit warmUp(bus_->address());
        }
        daemon::EventLoop loop;
        daemon::BusPtr bus = daemon::openBus(bus_->address());
        daemon::checkBus(sd_bus_attach_event(bus.get(), loop.get(), SD_EVENT_PRIORITY_NORMAL),
                         "attach");
        sd_bus_detach_event(bus.get());
    }
    void TearDown() override { bus_.reset(); }
    const std::string& address() const { return bus_->address(); }

  private:
    std::unique_ptr<TestBus> bus_;
};

// gtest's way to register an environment; a throw here ends the test binary at
// start, which is what it should do.
// NOLINTNEXTLINE(cert-err58-cpp)
PolkitEnvironment* const kEnvironment = static_cast<PolkitEnvironment*>(
    ::testing::AddGlobalTestEnvironment(new PolkitEnvironment));  // gtest owns it

// A process of `uid` with its own bus connection, until destroyed: its unique
// name is the system-bus-name subject polkitd resolves to that user.
class Peer {
  public:
    explicit Peer(uid_t uid) {
        int names[2], go[2];
        if (::pipe2(names, O_CLOEXEC) < 0 || ::pipe2(go, O_CLOEXEC) < 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        UniqueFd nameRead(names[0]), nameWrite(names[1]), goRead(go[0]);
        go_ = UniqueFd(go[1]);
        pid_ = forkProcess();
        if (pid_ == 0) {
            // Only our two pipe ends: another Peer's go_ held here would keep
            // its child waiting after that Peer is gone.
            int keep[2] = {std::min(nameWrite.get(), goRead.get()),
                           std::max(nameWrite.get(), goRead.get())};
            ::close_range(3, keep[0] - 1, 0);
            ::close_range(keep[0] + 1, keep[1] - 1, 0);
            ::close_range(keep[1] + 1, ~0U, 0);
            std::string name = "error";
            if (::setgroups(0, nullptr) == 0 && ::setresgid(uid, uid, uid) == 0 &&
                ::setresuid(uid, uid, uid) == 0) {
                try {
                    daemon::BusPtr bus = daemon::openBus(kEnvironment->address());
                    const char* unique = nullptr;
                    sd_bus_get_unique_name(bus.get(), &unique);
                    name = unique;
                    (void)!::write(nameWrite.get(), name.data(), name.size());
                    nameWrite.reset();
                    char none;
                    (void)!::read(goRead.get(), &none, 1);  // until the parent closes go_
                } catch (...) {
                }
            }
            (void)!::write(nameWrite.get(), name.data(), name.size());
            ::_exit(0);
        }
        nameWrite.reset();
        goRead.reset();
        char buf[256];
        ssize_t n = ::read(nameRead.get(), buf, sizeof(buf));
        name_.assign(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    }
    ~Peer() {
        go_.reset();
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;

    const std::string& name() const { return name_; }

  private:
    pid_t pid_ = -1;
    UniqueFd go_;
    std::string name_;
};

class PolkitTest : public LeakCheckedTest {
  protected:
    void SetUp() override {
        LeakCheckedTest::SetUp();
        if (!TestPolkit::installed()) {
            GTEST_SKIP() << "polkitd is not installed (package polkitd)";
        }
        if (kUserA == 0 || kUserB == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test-users)";
        }
        loop_ = std::make_unique<daemon::EventLoop>();
        bus_ = daemon::openBus(kEnvironment->address());
        daemon::checkBus(sd_bus_attach_event(bus_.get(), loop_->get(), SD_EVENT_PRIORITY_NORMAL),
                         "Failed to attach the bus");
    }

    void TearDown() override {
        client_.reset();
        bus_.reset();
        loop_.reset();
        polkit_.reset();
        LeakCheckedTest::TearDown();
    }

    void startPolkit(const std::string& rules) {
        polkit_ = std::make_unique<TestPolkit>(kEnvironment->address(), rules);
    }

    PolkitClient& client(PolkitClient::Options options = {}) {
        if (!client_) {
            client_ = std::make_unique<PolkitClient>(bus_.get(), options);
        }
        return *client_;
    }

    // Turns the loop until `done` or `timeout`; whether `done`.
    bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done()) {
            if (std::chrono::steady_clock::now() >= deadline) {
                return false;
            }
            int r = sd_event_run(loop_->get(), 10'000);
            EXPECT_GE(r, 0);
        }
        return true;
    }

    PolkitAnswer ask(const PolkitRequest& request) {
        std::optional<PolkitAnswer> answer;
        client().check(request, [&](const PolkitAnswer& a) { answer = a; });
        EXPECT_TRUE(runUntil([&] { return answer.has_value(); })) << "no answer from the client";
        return answer.value_or(PolkitAnswer{PolkitResult::Unavailable, "no answer", {}});
    }

    PolkitResult resultFor(const daemon::PolkitSubject& subject, const std::string& action,
                           std::map<std::string, std::string> details) {
        PolkitAnswer answer = ask({subject, action, std::move(details), false});
        EXPECT_TRUE(answer.result != PolkitResult::Unavailable || !polkit_)
            << answer.message << "\npolkitd's log:\n"
            << polkit_->log();
        return answer.result;
    }

    std::unique_ptr<daemon::EventLoop> loop_;
    daemon::BusPtr bus_;
    std::unique_ptr<TestPolkit> polkit_;
    std::unique_ptr<PolkitClient> client_;
};

std::string str(uid_t uid) {
    return std::to_string(uid);
}

// A process of `uid`, as a unix-process subject (a Varlink caller).
struct ProcessAs {
    explicit ProcessAs(uid_t uid)
        : child(Child::spawn([uid] {
              return ::setresgid(uid, uid, uid) < 0 || ::setresuid(uid, uid, uid) < 0 ? errno : 0;
          })) {}
    PolkitProcess subject() const {
        return {child.pid(), daemon::processStartTime(child.pid()), uid()};
    }
    uid_t uid() const { return statOf().st_uid; }
    struct stat statOf() const {
        struct stat st {};
        ::stat(("/proc/" + std::to_string(child.pid())).c_str(), &st);
        return st;
    }
    Child child;
};

const char* const kNetRule = R"(
polkit.addRule(function(action, subject) {
    if (action.id == "org.nsfd1.get-namespace" && subject.user == "nsfd-test-a" &&
        action.lookup("namespace") == "net") {
        return polkit.Result.YES;
    }
});
)";

TEST_F(PolkitTest, RuleOnNamespaceGrantsOnlyTheNamedUserOnlyThatNamespace) {
    startPolkit(kNetRule);
    Peer a(kUserA), b(kUserB);
    ASSERT_EQ(a.name().rfind(":1.", 0), 0U) << a.name();
    ASSERT_EQ(b.name().rfind(":1.", 0), 0U) << b.name();
    std::map<std::string, std::string> net = {
        {"pid", "1"}, {"id", "1"}, {"uid", "0"}, {"namespace", "net"}};
    std::map<std::string, std::string> uts = net;
    uts["namespace"] = "uts";

    EXPECT_EQ(resultFor(PolkitBusName{a.name()}, "org.nsfd1.get-namespace", net),
              PolkitResult::Authorized);
    EXPECT_EQ(resultFor(PolkitBusName{a.name()}, "org.nsfd1.get-namespace", uts),
              PolkitResult::NotAuthorized);
    EXPECT_EQ(resultFor(PolkitBusName{b.name()}, "org.nsfd1.get-namespace", net),
              PolkitResult::NotAuthorized);
    // Another action, the same details: the rule does not apply.
    EXPECT_EQ(resultFor(PolkitBusName{a.name()}, "org.nsfd1.get-pidfd", net),
              PolkitResult::NotAuthorized);

    // The same user as a process (how Varlink callers are asked about).
    ProcessAs processA(kUserA), processB(kUserB);
    ASSERT_EQ(processA.uid(), kUserA);
    EXPECT_EQ(resultFor(processA.subject(), "org.nsfd1.get-namespace", net),
              PolkitResult::Authorized);
    EXPECT_EQ(resultFor(processA.subject(), "org.nsfd1.get-namespace", uts),
              PolkitResult::NotAuthorized);
    EXPECT_EQ(resultFor(processB.subject(), "org.nsfd1.get-namespace", net),
              PolkitResult::NotAuthorized);
}

TEST_F(PolkitTest, ProcessSubjectWithAStaleStartTimeIsNotTheProcess) {
    startPolkit(kNetRule);
    ProcessAs a(kUserA);
    PolkitProcess subject = a.subject();
    subject.startTime += 1;  // a pid reused by another process
    PolkitAnswer answer =
        ask({subject, "org.nsfd1.get-namespace", {{"pid", "1"}, {"namespace", "net"}}, false});
    // polkitd fails the check rather than deny it; nsfdd denies either way.
    EXPECT_EQ(answer.result, PolkitResult::Unavailable);
    EXPECT_NE(answer.message.find("has been replaced"), std::string::npos) << answer.message;
}

TEST_F(PolkitTest, RuleOnTheTargetsUidAndNamespace) {
    // B may get the net namespace of A's processes, and nothing of anyone else's.
    startPolkit(R"(
polkit.addRule(function(action, subject) {
    if (action.id == "org.nsfd1.get-namespace" && subject.user == "nsfd-test-b" &&
        action.lookup("uid") == ")" +
                str(kUserA) + R"(" && action.lookup("namespace") == "net") {
        return polkit.Result.YES;
    }
    if (action.id == "org.nsfd1.send-signal" && subject.user == "nsfd-test-b" &&
        action.lookup("uid") == ")" +
                str(kUserA) + R"(" && action.lookup("signal") == "15") {
        return polkit.Result.YES;
    }
});
)");
    Peer b(kUserB);
    PolkitBusName subject{b.name()};
    auto details = [](uid_t uid, const char* key, const char* value) {
        return std::map<std::string, std::string>{
            {"pid", "4711"}, {"id", "99"}, {"uid", str(uid)}, {key, value}};
    };
    EXPECT_EQ(resultFor(subject, "org.nsfd1.get-namespace", details(kUserA, "namespace", "net")),
              PolkitResult::Authorized);
    EXPECT_EQ(resultFor(subject, "org.nsfd1.get-namespace", details(kUserA, "namespace", "mnt")),
              PolkitResult::NotAuthorized);
    EXPECT_EQ(resultFor(subject, "org.nsfd1.get-namespace", details(0, "namespace", "net")),
              PolkitResult::NotAuthorized);
    EXPECT_EQ(resultFor(subject, "org.nsfd1.send-signal", details(kUserA, "signal", "15")),
              PolkitResult::Authorized);
    EXPECT_EQ(resultFor(subject, "org.nsfd1.send-signal", details(kUserA, "signal", "9")),
              PolkitResult::NotAuthorized);
    EXPECT_EQ(resultFor(subject, "org.nsfd1.send-signal", details(kUserB, "signal", "15")),
              PolkitResult::NotAuthorized);
}

TEST_F(PolkitTest, AuthAdminRuleIsAChallenge) {
    startPolkit(R"(
polkit.addRule(function(action, subject) {
    if (action.id == "org.nsfd1.get-pidfd") {
        return polkit.Result.AUTH_ADMIN;
    }
});
)");
    Peer a(kUserA);
    PolkitRequest request{PolkitBusName{a.name()}, "org.nsfd1.get-pidfd", {{"pid", "1"}}, false};
    EXPECT_EQ(ask(request).result, PolkitResult::Challenge);

    // Interaction allowed, but no authentication agent for the subject:
    // polkitd answers at once, still a challenge (never authorized).
    request.allowInteraction = true;
    auto start = std::chrono::steady_clock::now();
    PolkitAnswer answer = ask(request);
    EXPECT_EQ(answer.result, PolkitResult::Challenge) << answer.message;
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
    EXPECT_EQ(client().pendingCount(), 0U);
}

TEST_F(PolkitTest, WithoutRulesTheActionsDefaultsDecide) {
    startPolkit("");
    Peer a(kUserA);
    // No logind session in the tests: allow_any ("no") applies, to every action.
    for (const char* action :
         {"org.nsfd1.read-info", "org.nsfd1.get-namespace", "org.nsfd1.get-pidfd",
          "org.nsfd1.send-signal", "org.nsfd1.untrack-any"}) {
        EXPECT_EQ(resultFor(PolkitBusName{a.name()}, action, {{"pid", "1"}}),
                  PolkitResult::NotAuthorized)
            << action;
    }
    // polkitd authorizes root for anything (nsfdd lets root through before asking).
    const char* ours = nullptr;
    sd_bus_get_unique_name(bus_.get(), &ours);
    EXPECT_EQ(resultFor(PolkitBusName{ours}, "org.nsfd1.get-pidfd", {}), PolkitResult::Authorized);
}

// The example shipped in the package's docs, with this machine's names: a
// group for "netadmin", user B for "deploy" and A's uid for 1001.
TEST_F(PolkitTest, TheExampleRulesFileDoesWhatItSays) {
    std::string rules = readFile(NSFD_TEST_SOURCE_DIR "/systemd/50-nsfd-example.rules");
    ASSERT_FALSE(rules.empty());
    for (auto [from, to] : {std::pair<std::string, std::string>{"\"netadmin\"", "\"nsfd-test-a\""},
                            {"\"deploy\"", "\"nsfd-test-b\""},
                            {"\"1001\"", "\"" + str(kUserA) + "\""}}) {
        ASSERT_NE(rules.find(from), std::string::npos) << from;
        for (std::size_t at = rules.find(from); at != std::string::npos;
             at = rules.find(from, at + to.size())) {
            rules.replace(at, from.size(), to);
        }
    }
    startPolkit(rules);
    Peer a(kUserA), b(kUserB);
    PolkitBusName inGroup{a.name()}, deploy{b.name()};
    auto target = [](uid_t uid, std::map<std::string, std::string> more = {}) {
        more.insert({{"pid", "4711"}, {"id", "99"}, {"uid", str(uid)}});
        return more;
    };
    // The group: net and uts namespaces of anyone's processes, and finding them.
    EXPECT_EQ(resultFor(inGroup, "org.nsfd1.get-namespace", target(0, {{"namespace", "net"}})),
              PolkitResult::Authorized);
    EXPECT_EQ(resultFor(inGroup, "org.nsfd1.get-namespace", target(0, {{"namespace", "uts"}})),
              PolkitResult::Authorized);
    EXPECT_EQ(resultFor(inGroup, "org.nsfd1.get-namespace", target(0, {{"namespace", "mnt"}})),
              PolkitResult::NotAuthorized);
    EXPECT_EQ(resultFor(inGroup, "org.nsfd1.read-info", target(0)), PolkitResult::Authorized);
    EXPECT_EQ(resultFor(inGroup, "org.nsfd1.send-signal", target(0, {{"signal", "15"}})),
              PolkitResult::NotAuthorized);
    // The user: signals to one uid's processes only.
    EXPECT_EQ(resultFor(deploy, "org.nsfd1.send-signal", target(kUserA, {{"signal", "15"}})),
              PolkitResult::Authorized);
    EXPECT_EQ(resultFor(deploy, "org.nsfd1.read-info", target(kUserA)), PolkitResult::Authorized);
    EXPECT_EQ(resultFor(deploy, "org.nsfd1.send-signal", target(0, {{"signal", "15"}})),
              PolkitResult::NotAuthorized);
    EXPECT_EQ(resultFor(deploy, "org.nsfd1.get-namespace", target(kUserA, {{"namespace", "net"}})),
              PolkitResult::NotAuthorized);
}

TEST_F(PolkitTest, AnUnknownActionIsAnErrorNotADenial) {
    startPolkit("");
    Peer a(kUserA);
    PolkitAnswer answer = ask({PolkitBusName{a.name()}, "org.nsfd1.no-such-action", {}, false});
    EXPECT_EQ(answer.result, PolkitResult::Unavailable);
    EXPECT_NE(answer.message.find("polkitd failed: "), std::string::npos) << answer.message;
    std::cout << "[ polkitd  ] unknown action: " << answer.message << "\n";
}

TEST_F(PolkitTest, PausedPolkitdTimesOutWhileTheLoopServesOtherWork) {
    startPolkit(kNetRule);
    Peer a(kUserA);
    PolkitClient::Options options;
    options.timeout = 300ms;
    client(options);
    polkit_->pause();

    std::optional<PolkitAnswer> answer;
    std::chrono::steady_clock::time_point sentAt = std::chrono::steady_clock::now(), answeredAt;
    client().check(
        {PolkitBusName{a.name()}, "org.nsfd1.get-namespace", {{"namespace", "net"}}, false},
        [&](const PolkitAnswer& got) {
            answer = got;
            answeredAt = std::chrono::steady_clock::now();
        });
    // Meanwhile: a timer every 10 ms, and a call to the bus that is answered.
    int ticks = 0;
    sd_event_source* raw = nullptr;
    ASSERT_GE(sd_event_add_time_relative(
                  loop_->get(), &raw, CLOCK_MONOTONIC, 10'000, 0,
                  [](sd_event_source* source, uint64_t, void* userdata) {
                      ++*static_cast<int*>(userdata);
                      int r = sd_event_source_set_time_relative(source, 10'000);
                      return r < 0 ? r : sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
                  },
                  &ticks),
              0);
    daemon::EventSource timer(raw);
    std::optional<std::chrono::steady_clock::time_point> busAnsweredAt;
    sd_bus_slot* slot = nullptr;
    ASSERT_GE(sd_bus_call_method_async(
                  bus_.get(), &slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                  "org.freedesktop.DBus", "GetId",
                  [](sd_bus_message*, void* userdata, sd_bus_error*) {
                      *static_cast<std::optional<std::chrono::steady_clock::time_point>*>(
                          userdata) = std::chrono::steady_clock::now();
                      return 0;
                  },
                  &busAnsweredAt, ""),
              0);
    daemon::BusSlot busCall(slot);

    ASSERT_TRUE(runUntil([&] { return answer.has_value(); }, 5s));
    auto waited = answeredAt - sentAt;
    EXPECT_EQ(answer->result, PolkitResult::Unavailable);
    EXPECT_EQ(answer->message, "polkitd did not answer within 300 ms");
    EXPECT_GE(waited, 300ms);
    EXPECT_LT(waited, 1s);
    ASSERT_TRUE(busAnsweredAt.has_value());
    EXPECT_LT(*busAnsweredAt - sentAt, 250ms) << "the bus call waited for polkitd";
    EXPECT_GE(ticks, 10) << "the loop stalled while polkitd did not answer";
    std::cout
        << "[ measured ] timeout 300 ms answered after "
        << std::chrono::duration_cast<std::chrono::microseconds>(waited).count()
        << " us; loop ticks meanwhile: " << ticks << "; bus call answered after "
        << std::chrono::duration_cast<std::chrono::microseconds>(*busAnsweredAt - sentAt).count()
        << " us\n";

    // Once resumed, polkitd answers the next check; its late answer to the
    // first one is dropped.
    polkit_->resume();
    EXPECT_EQ(resultFor(PolkitBusName{a.name()}, "org.nsfd1.get-namespace", {{"namespace", "net"}}),
              PolkitResult::Authorized);
}

TEST_F(PolkitTest, InteractiveChecksHaveTheirOwnTimeout) {
    startPolkit(kNetRule);
    Peer a(kUserA);
    PolkitClient::Options options;
    options.timeout = 100ms;
    options.interactiveTimeout = 400ms;
    client(options);
    polkit_->pause();
    PolkitRequest request{
        PolkitBusName{a.name()}, "org.nsfd1.get-namespace", {{"namespace", "net"}}, true};
    auto start = std::chrono::steady_clock::now();
    PolkitAnswer answer = ask(request);
    auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(answer.result, PolkitResult::Unavailable);
    EXPECT_EQ(answer.message, "polkitd did not answer within 400 ms");
    EXPECT_GE(waited, 400ms);
    // Resumed, polkitd reads our CancelCheckAuthorization for the lost check and
    // answers the next one.
    polkit_->resume();
    EXPECT_EQ(ask(request).result, PolkitResult::Authorized);
}

TEST_F(PolkitTest, AbsentPolkitdIsUnavailableAtOnce) {
    Peer a(kUserA);
    client();  // the default 20 s timeout: not what decides here
    for (int i = 0; i < 3; ++i) {
        auto start = std::chrono::steady_clock::now();
        PolkitAnswer answer =
            ask({PolkitBusName{a.name()}, "org.nsfd1.get-namespace", {{"namespace", "net"}}, true});
        auto waited = std::chrono::steady_clock::now() - start;
        EXPECT_EQ(answer.result, PolkitResult::Unavailable);
        EXPECT_EQ(answer.message, "polkitd is not running");
        EXPECT_LT(waited, 100ms);
        std::cout << "[ measured ] no polkitd: answered after "
                  << std::chrono::duration_cast<std::chrono::microseconds>(waited).count()
                  << " us\n";
    }
}

TEST_F(PolkitTest, NoCallbackAfterCancelOrDestruction) {
    startPolkit(kNetRule);
    Peer a(kUserA);
    PolkitRequest request{
        PolkitBusName{a.name()}, "org.nsfd1.get-namespace", {{"namespace", "net"}}, true};
    polkit_->pause();
    int called = 0;
    PolkitClient::CheckId first = client().check(request, [&](const PolkitAnswer&) { ++called; });
    client().check(request, [&](const PolkitAnswer&) { ++called; });
    EXPECT_EQ(client().pendingCount(), 2U);
    client().cancel(first);
    client().cancel(first);  // again: ignored
    EXPECT_EQ(client().pendingCount(), 1U);
    runUntil([] { return false; }, 50ms);
    client_.reset();  // with one check pending
    polkit_->resume();
    runUntil([] { return false; }, 300ms);  // polkitd's answers arrive, to no one
    EXPECT_EQ(called, 0);
}

TEST_F(PolkitTest, ACallbackMayDestroyTheClient) {
    startPolkit(kNetRule);
    Peer a(kUserA);
    int called = 0;
    PolkitRequest request{
        PolkitBusName{a.name()}, "org.nsfd1.get-namespace", {{"namespace", "net"}}, false};
    client().check(request, [&](const PolkitAnswer& answer) {
        ++called;
        EXPECT_EQ(answer.result, PolkitResult::Authorized);
        client_.reset();
    });
    client().check(request, [&](const PolkitAnswer&) { ++called; });
    runUntil([&] { return called > 0 && !client_; });
    runUntil([] { return false; }, 100ms);
    EXPECT_EQ(called, 1);
}

TEST_F(PolkitTest, ACheckThatCannotBeSentIsAnsweredFromTheLoop) {
    client();
    sd_bus_close(bus_.get());
    bool called = false;
    PolkitAnswer got;
    client().check({PolkitBusName{":1.1"}, "org.nsfd1.read-info", {}, false},
                   [&](const PolkitAnswer& answer) {
                       called = true;
                       got = answer;
                   });
    EXPECT_FALSE(called) << "the callback ran within check()";
    ASSERT_TRUE(runUntil([&] { return called; }, 1s));
    EXPECT_EQ(got.result, PolkitResult::Unavailable);
    EXPECT_NE(got.message.find("Failed to ask polkitd about org.nsfd1.read-info"),
              std::string::npos)
        << got.message;
}

TEST(ProcessStartTime, IsField22OfStat) {
    std::uint64_t mine = daemon::processStartTime(::getpid());
    EXPECT_GT(mine, 0U);
    EXPECT_EQ(daemon::processStartTime(::getpid()), mine);
    EXPECT_THROW(daemon::processStartTime(999'999'999), std::system_error);
}

}  // namespace
}  // namespace nsfd::test
