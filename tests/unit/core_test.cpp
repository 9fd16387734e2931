// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd's core without any bus, as systemd's test-machined-core.c tests
// machined's manager: real processes on a real sd-event loop, tracked, reaped
// and retained; trackers and their quotas; lookups by pid across pid reuse;
// exits racing a call; and the authorization step decider by decider.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "child.hpp"
#include "core/manager.hpp"
#include "nsfd/features.hpp"

namespace nsfd::test {
namespace {

using namespace daemon;  // NOLINT: the core's names read best unqualified here

Caller callerWithUid(uid_t uid) {
    Caller caller;
    caller.uid = uid;
    caller.gid = uid;
    caller.pid = ::getpid();
    return caller;
}

// What the manager told its observer, in order.
class Recorder final : public ManagerObserver {
  public:
    void processTracked(const TrackedProcess& p) override { add("tracked", p); }
    void processStateChanged(const TrackedProcess& p) override {
        add(std::string(toString(p.state())), p);
        if (p.exitStatus()) {
            status = *p.exitStatus();
        }
    }
    void processRemoved(const TrackedProcess& p) override { add("removed", p); }

    std::vector<std::string> events;
    int status = -1;

  private:
    void add(const std::string& what, const TrackedProcess& p) {
        events.push_back(what + " " + std::to_string(p.id()));
    }
};

class CoreTest : public LeakCheckedTest {
  protected:
    void SetUp() override {
        LeakCheckedTest::SetUp();
        if (!kernelFeatures().pidfs || !kernelFeatures().info) {
            GTEST_SKIP() << "the core needs pidfs and PIDFD_GET_INFO (kernel 6.13+)";
        }
        ::unsetenv("NOTIFY_SOCKET");  // no service manager: the fd store is off
        config_.retention = std::chrono::seconds(0);
        start();
    }

    void TearDown() override {
        stop();
        LeakCheckedTest::TearDown();
    }

    void start() {
        loop_ = std::make_unique<EventLoop>();
        notifier_ = std::make_unique<Notifier>();
        manager_ = std::make_unique<Manager>(*loop_, config_, *notifier_);
        manager_->addObserver(recorder_);
    }

    void stop() {
        manager_.reset();
        notifier_.reset();
        loop_.reset();
    }

    // Runs the loop until `done`, for at most two seconds.
    bool runUntil(const std::function<bool()>& done) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) {
                return false;
            }
            sd_event_run(loop_->get(), 10'000);
        }
        return true;
    }

    TrackedProcess& track(const Caller& caller, const Child& child) {
        return manager_->track(caller, manager_->openPid(caller, child.pid()));
    }

    Config config_;
    Recorder recorder_;
    std::unique_ptr<EventLoop> loop_;
    std::unique_ptr<Notifier> notifier_;
    std::unique_ptr<Manager> manager_;
};

TEST_F(CoreTest, ATrackedProcessExitsIsReapedWithItsWaitStatusAndGoesAfterRetention) {
    Child child = Child::spawn();
    TrackedProcess& process = track(callerWithUid(0), child);
    std::uint64_t id = process.id();
    std::string tag = " " + std::to_string(id);
    EXPECT_EQ(recorder_.events, std::vector<std::string>{"tracked" + tag});

    child.release(42);
    child.awaitExit();
    ASSERT_TRUE(runUntil([&] { return process.state() == ProcessState::Exited; }));
    EXPECT_EQ(child.reap(), 42 << 8);
    ASSERT_TRUE(runUntil([&] { return manager_->find(id) == nullptr; }));
    EXPECT_EQ(recorder_.events, (std::vector<std::string>{"tracked" + tag, "exited" + tag,
                                                          "reaped" + tag, "removed" + tag}));
    EXPECT_EQ(recorder_.status, 42 << 8);
}

TEST_F(CoreTest, EachTrackerDropsOnlyItsOwnTrackingAndTheProcessGoesWithTheLast) {
    Child child = Child::spawn();
    Caller a = callerWithUid(60001), b = callerWithUid(60002), root = callerWithUid(0);
    std::uint64_t id = track(a, child).id();
    EXPECT_EQ(track(b, child).id(), id);
    EXPECT_EQ(track(root, child).id(), id);
    EXPECT_EQ(track(a, child).id(), id);  // again: still one tracking of a's
    EXPECT_EQ(manager_->find(id)->trackers(), (std::vector<uid_t>{60001, 60002, 0}));
    EXPECT_EQ(recorder_.events.size(), 1U) << "tracked once, whoever tracks it";

    manager_->untrack(a, id);
    EXPECT_EQ(manager_->find(id)->trackers(), (std::vector<uid_t>{60002, 0}));
    manager_->untrack(root, id);  // root tracks it too: drops only its own
    EXPECT_EQ(manager_->find(id)->trackers(), (std::vector<uid_t>{60002}));
    manager_->untrack(b, id);
    EXPECT_EQ(manager_->find(id), nullptr);
    EXPECT_EQ(recorder_.events.back(), "removed " + std::to_string(id));
}

TEST_F(CoreTest, UntrackByACallerThatTracksNothingDropsEveryTracking) {
    // The authorization step let it through (root, or polkit's untrack-any).
    Child child = Child::spawn();
    Caller a = callerWithUid(60001), b = callerWithUid(60002);
    std::uint64_t id = track(a, child).id();
    track(b, child);
    manager_->untrack(callerWithUid(0), id);
    EXPECT_EQ(manager_->find(id), nullptr);
}

// A reaped process holds its slot of the fd store for its retention, so it
// counts against its trackers' quotas until then, or until they untrack it
// (issue 22: one user's short-lived processes filled the store).
TEST_F(CoreTest, QuotasCountTrackingsPerTrackerAndAReapedProcessUntilItsTrackerLetsGo) {
    config_.trackedPerUser = 1;
    Child first = Child::spawn(), second = Child::spawn();
    Caller a = callerWithUid(60001), b = callerWithUid(60002);
    std::uint64_t id = track(a, first).id();
    track(b, first);  // b's own quota
    try {
        track(a, second);
        ADD_FAILURE() << "a tracked two processes with a quota of one";
    } catch (const ServiceError& e) {
        EXPECT_EQ(e.kind(), ErrorKind::LimitExceeded);
        EXPECT_NE(std::string(e.what()).find("already tracks 1 processes"), std::string::npos)
            << e.what();
    }
    config_.retention = std::chrono::seconds(60);  // kept, reaped: still counts
    first.release(0);
    first.reap();
    ASSERT_TRUE(runUntil([&] { return manager_->find(id)->state() == ProcessState::Reaped; }));
    EXPECT_THROW(track(a, second), ServiceError);
    manager_->untrack(a, id);  // a has read its exit status: gives the place back
    EXPECT_NO_THROW(track(a, second));
    EXPECT_NE(manager_->find(id), nullptr) << "still retained for b";
}

// Every uid of a user namespace counts as the namespace's user: a rootless
// container tracking as several of its user's subordinate uids shares that
// user's quota, it gets no more (issue 22).
TEST_F(CoreTest, TheUidsOfAUserNamespaceShareTheQuotaOfItsOwner) {
    constexpr uid_t kFirstSubordinate = 200000;
    const passwd* user = ::getpwnam("nsfd-test-a");  // a static buffer: read at once
    ASSERT_NE(user, nullptr) << "scripts/test-users makes nsfd-test-a";
    const uid_t owner = user->pw_uid;
    const gid_t ownerGid = user->pw_gid;
    user = ::getpwnam("nsfd-test-b");
    ASSERT_NE(user, nullptr) << "scripts/test-users makes nsfd-test-b";
    const uid_t other = user->pw_uid;
    ASSERT_NE(owner, other);
    config_.trackedPerUser = 2;
    // nsfd-test-a's user namespace; root maps its uids and gids 0-7 to 200000-200007.
    Child container = Child::spawn([&] {
        if (::setgroups(0, nullptr) < 0 || ::setresgid(ownerGid, ownerGid, ownerGid) < 0 ||
            ::setresuid(owner, owner, owner) < 0 || ::unshare(CLONE_NEWUSER) < 0) {
            return errno;
        }
        return 0;
    });
    std::string map = "0 " + std::to_string(kFirstSubordinate) + " 8\n";
    for (const char* file : {"uid_map", "gid_map"}) {
        std::string path = "/proc/" + std::to_string(container.pid()) + "/" + file;
        UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
        ASSERT_TRUE(fd.ok()) << path << ": " << std::strerror(errno);
        ASSERT_EQ(::write(fd.get(), map.data(), map.size()), static_cast<ssize_t>(map.size()))
            << path << ": " << std::strerror(errno);
    }
    std::string nsPath = "/proc/" + std::to_string(container.pid()) + "/ns/user";
    UniqueFd userNamespace(::open(nsPath.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(userNamespace.ok()) << nsPath << ": " << std::strerror(errno);
    // A process of uid `uid` inside it, as nsfdd identifies a caller.
    auto inside = [&](uid_t uid) {
        return Child::spawn([&] {
            if (::setns(userNamespace.get(), CLONE_NEWUSER) < 0 || ::setgroups(0, nullptr) < 0 ||
                ::setresgid(uid, uid, uid) < 0 || ::setresuid(uid, uid, uid) < 0) {
                return errno;
            }
            return 0;
        });
    };
    auto callerOf = [&](const Child& process, uid_t uid) {
        Caller caller = callerWithUid(kFirstSubordinate + uid);
        caller.pid = process.pid();
        identifyProcess(caller, std::make_shared<const PidFd>(PidFd::open(process.pid())),
                        OwnNamespaces::ofSelf());
        return caller;
    };
    Child first = inside(1), second = inside(2);
    Caller one = callerOf(first, 1), two = callerOf(second, 2);
    ASSERT_TRUE(one.isSandboxed());
    EXPECT_EQ(one.account(), owner);
    EXPECT_EQ(two.account(), owner);
    Child a = Child::spawn(), b = Child::spawn(), c = Child::spawn();
    manager_->track(one, PidFd::open(a.pid()));
    manager_->track(one, PidFd::open(b.pid()));
    const std::string refusal = "uid " + std::to_string(owner) +
                                ", owner of the caller's user namespace already tracks 2 "
                                "processes, its limit";
    try {
        manager_->track(two, PidFd::open(c.pid()));
        ADD_FAILURE() << "uid 2 of nsfd-test-a's namespace got a share of its own";
    } catch (const ServiceError& e) {
        EXPECT_EQ(e.kind(), ErrorKind::LimitExceeded);
        EXPECT_EQ(std::string(e.what()), refusal);
    }
    // The user itself has none left either; another user has its own.
    EXPECT_THROW(manager_->track(callerWithUid(owner), PidFd::open(c.pid())), ServiceError);
    EXPECT_NO_THROW(manager_->track(callerWithUid(other), PidFd::open(c.pid())));
    const TrackedProcess* tracked = manager_->find(PidFd::open(c.pid()).id());
    ASSERT_NE(tracked, nullptr);
    EXPECT_EQ(tracked->trackers(), (std::vector<uid_t>{other}));
}

TEST_F(CoreTest, ALookupByPidFindsTheProcessThatHasThatPidNow) {
    config_.retention = std::chrono::seconds(60);
    Caller root = callerWithUid(0);
    Child old = Child::spawn();
    pid_t pid = old.pid();
    std::uint64_t oldId = track(root, old).id();
    EXPECT_EQ(manager_->trackedWithPid(root, pid).id(), oldId);
    old.release(3);
    old.reap();
    ASSERT_TRUE(runUntil([&] { return manager_->find(oldId)->state() == ProcessState::Reaped; }));
    // No process has the pid: the retained one answers, with its exit status.
    EXPECT_EQ(manager_->trackedWithPid(root, pid).id(), oldId);
    EXPECT_EQ(manager_->trackedWithPid(root, pid).exitStatus(), 3 << 8);

    // The pid taken again, by an untracked process: the old one is found by id only.
    Child reused = Child::spawn({}, {0, pid});
    ASSERT_EQ(reused.pid(), pid);
    EXPECT_THROW(manager_->trackedWithPid(root, pid), ServiceError);
    EXPECT_EQ(manager_->find(oldId)->pid(), pid);
    std::uint64_t newId = track(root, reused).id();
    EXPECT_NE(newId, oldId);
    EXPECT_EQ(manager_->trackedWithPid(root, pid).id(), newId);
}

TEST_F(CoreTest, AProcessThatExitedBeforeTheDecisionIsProcessExitedNeverADenial) {
    Child zombie = Child::spawn([] {
        return ::setresgid(60001, 60001, 60001) < 0 || ::setresuid(60001, 60001, 60001) < 0 ? errno
                                                                                            : 0;
    });
    PidFd pidfd = manager_->openPid(callerWithUid(60001), zombie.pid());
    zombie.release(0);
    zombie.awaitExit();
    for (Action action : {Action::GetNamespace, Action::GetPidFd}) {
        try {
            manager_->targetOf(callerWithUid(60001), pidfd, action);
            ADD_FAILURE() << "no error for a zombie";
        } catch (const ServiceError& e) {
            EXPECT_EQ(e.kind(), ErrorKind::ProcessExited) << e.what();
        }
    }
    // What needs only its credentials is still decided (a zombie keeps them).
    EXPECT_EQ(manager_->targetOf(callerWithUid(60001), pidfd, Action::SendSignal).creds.ruid,
              60001U);
    zombie.reap();
    try {
        manager_->targetOf(callerWithUid(60001), pidfd, Action::ReadInfo);
        ADD_FAILURE() << "no error for a reaped process";
    } catch (const ServiceError& e) {
        EXPECT_EQ(e.kind(), ErrorKind::ProcessExited) << e.what();
    }
}

TEST_F(CoreTest, APidFromAnotherPidNamespaceIsRefusedAndNoPidIsShownToIt) {
    Caller foreign = callerWithUid(0);
    foreign.inOurPidNamespace = false;
    try {
        manager_->openPid(foreign, ::getpid());
        ADD_FAILURE() << "a foreign pid was taken";
    } catch (const ServiceError& e) {
        EXPECT_EQ(e.kind(), ErrorKind::ForeignPidNamespace);
        EXPECT_NE(std::string(e.what()).find("pass a pidfd"), std::string::npos) << e.what();
    }
    EXPECT_THROW(manager_->trackedWithPid(foreign, ::getpid()), ServiceError);
    EXPECT_EQ(manager_->pidFor(foreign, ::getpid()), 0U);
    EXPECT_EQ(manager_->pidFor(callerWithUid(0), ::getpid()),
              static_cast<std::uint32_t>(::getpid()));
}

// What Manager::resolve gave: the resolution, or the error's kind; and how
// often either came.
struct Outcome {
    std::optional<Resolution> resolution;
    std::optional<ErrorKind> error;
    int calls = 0;
};

Outcome resolveNow(Manager& core, const Caller& caller, const Named& named, Action action) {
    Outcome out;
    core.resolve(
        caller, named, action,
        [&out](Resolution r) {
            ++out.calls;
            out.resolution = std::move(r);
        },
        [&out](const std::exception_ptr& error) {
            ++out.calls;
            try {
                std::rethrow_exception(error);
            } catch (const ServiceError& e) {
                out.error = e.kind();
            }
        });
    return out;
}

TEST_F(CoreTest, WhatACallerNamedResolvesToTheRequestForItsActionAndIsLookedUpAgainAfter) {
    Child child = Child::spawn([] {
        return ::setresgid(60001, 60001, 60001) < 0 || ::setresuid(60001, 60001, 60001) < 0 ? errno
                                                                                            : 0;
    });
    Caller user = callerWithUid(60001);

    Outcome byPid = resolveNow(*manager_, user, Named::byPid(child.pid()), Action::SendSignal);
    ASSERT_EQ(byPid.calls, 1);
    ASSERT_TRUE(byPid.resolution);
    const Request& request = byPid.resolution->request;
    EXPECT_EQ(request.action, Action::SendSignal);
    EXPECT_EQ(request.target.pid, child.pid());
    EXPECT_EQ(request.target.creds.ruid, 60001U);
    EXPECT_TRUE(request.target.trackers.empty());
    EXPECT_FALSE(byPid.resolution->process.trackedId());
    EXPECT_EQ(byPid.resolution->process.pidfd().pid(), child.pid());
    EXPECT_EQ(request.target.id, byPid.resolution->process.pidfd().id());

    std::uint64_t id = track(user, child).id();
    Outcome byId = resolveNow(*manager_, user, Named::byId(id), Action::GetPidFd);
    ASSERT_EQ(byId.calls, 1);
    ASSERT_TRUE(byId.resolution);
    EXPECT_EQ(byId.resolution->request.action, Action::GetPidFd);
    EXPECT_EQ(byId.resolution->request.target.id, id);
    EXPECT_EQ(byId.resolution->request.target.trackers, std::vector<uid_t>{60001});
    ASSERT_EQ(byId.resolution->process.trackedId(), std::optional<std::uint64_t>(id));
    ProcessView view = manager_->view(user, byId.resolution->process);
    EXPECT_EQ(view.id, id);
    EXPECT_EQ(view.state, ProcessState::Running);
    EXPECT_EQ(view.pid, static_cast<std::uint32_t>(child.pid()));
    EXPECT_EQ(view.parentPid, static_cast<std::uint32_t>(::getpid()));

    // Untracked while the decision was pending: the process is looked up again.
    manager_->untrack(user, id);
    try {
        byId.resolution->process.pidfd();
        ADD_FAILURE() << "an untracked process was still found";
    } catch (const ServiceError& e) {
        EXPECT_EQ(e.kind(), ErrorKind::NotTracked);
        EXPECT_NE(std::string(e.what()).find("untracked meanwhile"), std::string::npos) << e.what();
    }
    EXPECT_THROW(manager_->view(user, byId.resolution->process), ServiceError);
    // The held pidfd is not: it still names the process.
    EXPECT_EQ(manager_->view(user, byPid.resolution->process).id, request.target.id);

    // Errors go to `failed`, once, and never to `then`.
    Outcome gone = resolveNow(*manager_, user, Named::byId(id), Action::ReadInfo);
    EXPECT_EQ(gone.calls, 1);
    EXPECT_FALSE(gone.resolution);
    EXPECT_EQ(gone.error, ErrorKind::NotTracked);
    Outcome malformed =
        resolveNow(*manager_, user, Named::bySelector("container:NOT-HEX"), Action::ReadInfo);
    EXPECT_EQ(malformed.calls, 1);
    EXPECT_EQ(malformed.error, ErrorKind::InvalidArgs);
    child.release(0);
    child.reap();
}

// -- the authorization step, decider by decider --

Target targetOwnedBy(uid_t uid, bool dumpable = true) {
    Target target;
    target.id = 1;
    target.pid = 4711;
    target.creds = Credentials{uid, uid, uid, uid, uid, uid, uid, uid};
    target.dumpable = dumpable;
    target.visible = true;
    return target;
}

using Verdict = Decider::Verdict;

TEST(KernelRuleTest, DecidesAsTheKernelWouldForTheCallerItself) {
    KernelRule rule;
    Caller user = callerWithUid(1000);
    auto decide = [&](Action action, Target target) {
        return rule.decideNow(user, Request{action, std::move(target), {NsType::Net}, 15});
    };
    // Its own process: info, namespaces, pidfd, signal; never GetFd.
    for (Action action : {Action::ReadInfo, Action::Track, Action::GetNamespace, Action::GetPidFd,
                          Action::SendSignal}) {
        EXPECT_EQ(decide(action, targetOwnedBy(1000)), Verdict::Allow) << verbOf(action);
    }
    EXPECT_EQ(decide(Action::GetFd, targetOwnedBy(1000)), Verdict::Pass);
    // Not dumpable: ptrace's rule says no; info and kill(2)'s rule do not care.
    EXPECT_EQ(decide(Action::GetNamespace, targetOwnedBy(1000, false)), Verdict::Pass);
    EXPECT_EQ(decide(Action::GetPidFd, targetOwnedBy(1000, false)), Verdict::Pass);
    EXPECT_EQ(decide(Action::ReadInfo, targetOwnedBy(1000, false)), Verdict::Allow);
    // Someone else's process: nothing, unless it is the caller's by real or saved uid.
    for (Action action :
         {Action::ReadInfo, Action::GetNamespace, Action::SendSignal, Action::Untrack}) {
        EXPECT_EQ(decide(action, targetOwnedBy(1001)), Verdict::Pass) << verbOf(action);
    }
    Target setuid = targetOwnedBy(0);
    setuid.creds.ruid = 1000;  // a setuid program the caller started
    EXPECT_EQ(decide(Action::SendSignal, setuid), Verdict::Allow);
    EXPECT_EQ(decide(Action::GetNamespace, setuid), Verdict::Pass);
    // Its own tracking: it may read and drop it.
    Target tracked = targetOwnedBy(1001);
    tracked.trackers = {1000};
    EXPECT_EQ(decide(Action::ReadInfo, tracked), Verdict::Allow);
    EXPECT_EQ(decide(Action::Untrack, tracked), Verdict::Allow);
}

TEST(ConfigGrantsTest, GrantWhatTheTablesSayToTheirUserOrGroup) {
    Config config = parseConfig(R"(
[[grant]]
group = "users"
namespaces = ["net", "uts"]
[[grant]]
user = "root"
info = true
pidfd = true
)",
                                "test.conf");
    ConfigGrants grants(config);
    Caller member = callerWithUid(1000);
    member.groups = {100};  // "users"
    Target other = targetOwnedBy(1001);
    auto decide = [&](const Caller& caller, Action action, std::vector<NsType> types = {}) {
        return grants.decideNow(caller, Request{action, other, std::move(types), 0});
    };
    EXPECT_EQ(decide(member, Action::GetNamespace, {NsType::Net}), Verdict::Allow);
    EXPECT_EQ(decide(member, Action::GetNamespace, {NsType::Net, NsType::Uts}), Verdict::Allow);
    EXPECT_EQ(decide(member, Action::GetNamespace, {NsType::Net, NsType::Mnt}), Verdict::Pass)
        << "every type asked for must be granted";
    EXPECT_EQ(decide(member, Action::ReadInfo), Verdict::Pass);
    EXPECT_EQ(decide(member, Action::GetPidFd), Verdict::Pass);
    EXPECT_EQ(decide(callerWithUid(1000), Action::GetNamespace, {NsType::Net}), Verdict::Pass)
        << "not a member";
    Caller namedUser = callerWithUid(0);
    EXPECT_EQ(decide(namedUser, Action::ReadInfo), Verdict::Allow);
    EXPECT_EQ(decide(namedUser, Action::GetPidFd), Verdict::Allow);
    // Grants never extend signals, untracking or GetFd.
    for (Action action : {Action::SendSignal, Action::Untrack, Action::GetFd}) {
        EXPECT_EQ(decide(namedUser, action), Verdict::Pass) << verbOf(action);
    }
}

TEST(KernelRuleTest, EnterOnlyWhereTheCallerCouldEnterEachTypeItself) {
    KernelRule rule;
    Caller user = callerWithUid(1000);
    Target target = targetOwnedBy(1000);
    target.enterable = {NsType::Net, NsType::Uts};  // a rootless container of the caller's
    auto decide = [&](std::vector<NsType> types) {
        Request request{Action::Enter, target, std::move(types), 0};
        request.command = "ip";
        return rule.decideNow(user, request);
    };
    EXPECT_EQ(decide({NsType::Net}), Verdict::Allow);
    EXPECT_EQ(decide({NsType::Net, NsType::Uts}), Verdict::Allow);
    EXPECT_EQ(decide({NsType::Net, NsType::Ipc}), Verdict::Pass) << "every type, or none";
    EXPECT_EQ(decide({}), Verdict::Pass);
    target.enterable.clear();  // the caller's own process, in namespaces it does not own
    EXPECT_EQ(decide({NsType::Net}), Verdict::Pass);
}

TEST(ConfigGrantsTest, EnterNeedsOneGrantNamingEveryTypeAskedFor) {
    Config config = parseConfig(R"(
[[grant]]
group = "users"
enter = ["net", "uts"]
[[grant]]
group = "users"
enter = ["ipc"]
)",
                                "test.conf");
    ConfigGrants grants(config);
    Caller member = callerWithUid(1000);
    member.groups = {100};  // "users"
    auto decide = [&](const Caller& caller, std::vector<NsType> types) {
        return grants.decideNow(caller,
                                Request{Action::Enter, targetOwnedBy(0), std::move(types), 0});
    };
    EXPECT_EQ(decide(member, {NsType::Net}), Verdict::Allow);
    EXPECT_EQ(decide(member, {NsType::Net, NsType::Uts}), Verdict::Allow);
    EXPECT_EQ(decide(member, {NsType::Ipc}), Verdict::Allow);
    EXPECT_EQ(decide(member, {NsType::Net, NsType::Ipc}), Verdict::Pass)
        << "net and ipc are granted apart, never together";
    EXPECT_EQ(decide(callerWithUid(1000), {NsType::Net}), Verdict::Pass) << "not a member";
    // A namespaces grant is not an enter grant.
    Config fds = parseConfig("[[grant]]\ngroup = \"users\"\nnamespaces = [\"all\"]\n", "x");
    EXPECT_EQ(ConfigGrants(fds).decideNow(
                  member, Request{Action::Enter, targetOwnedBy(0), {NsType::Net}, 0}),
              Verdict::Pass);
}

TEST(KernelRuleTest, NothingOnAProcessTheCallerCannotNameAndNoUncaughtSignalToItsInit) {
    KernelRule rule;
    Caller user = callerWithUid(1000);
    auto decide = [&](Action action, const Target& target, int signal = 15) {
        return rule.decideNow(user, Request{action, target, {NsType::Net}, signal});
    };
    Target outside = targetOwnedBy(1000);
    outside.visible = false;  // no pid in the caller's pid namespace
    outside.trackers = {1000};
    for (Action action : {Action::ReadInfo, Action::Track, Action::GetNamespace, Action::GetPidFd,
                          Action::SendSignal}) {
        EXPECT_EQ(decide(action, outside), Verdict::Pass) << verbOf(action);
    }
    EXPECT_EQ(decide(Action::Untrack, outside), Verdict::Allow) << "its own tracking it may drop";
    Target init = targetOwnedBy(1000);
    init.isCallersInit = true;
    init.caughtSignals = std::uint64_t{1} << (SIGUSR1 - 1);
    EXPECT_EQ(decide(Action::SendSignal, init, SIGKILL), Verdict::Pass);
    EXPECT_EQ(decide(Action::SendSignal, init, SIGTERM), Verdict::Pass);
    EXPECT_EQ(decide(Action::SendSignal, init, SIGUSR1), Verdict::Allow) << "it catches SIGUSR1";
    EXPECT_EQ(decide(Action::GetNamespace, init), Verdict::Allow);
}

TEST(ConfigGrantsTest, ACallerInAUserNamespaceOfItsOwnGetsOnlyGrantsMarkedSandboxed) {
    Config config = parseConfig(R"(
[[grant]]
group = "users"
namespaces = ["net"]
[[grant]]
user = "root"
pidfd = true
sandboxed = true
)",
                                "test.conf");
    ConfigGrants grants(config);
    Target other = targetOwnedBy(1001);
    other.visible = false;  // grants reach where the kernel rule does not
    auto decide = [&](const Caller& caller, Action action, std::vector<NsType> types = {}) {
        return grants.decideNow(caller, Request{action, other, std::move(types), 0});
    };
    Caller member = callerWithUid(1000);
    member.groups = {100};
    EXPECT_EQ(decide(member, Action::GetNamespace, {NsType::Net}), Verdict::Allow);
    member.inOurUserNamespace = false;
    EXPECT_EQ(decide(member, Action::GetNamespace, {NsType::Net}), Verdict::Pass);
    // uid 0 of a user namespace of its own is no root, and only the marked grant applies.
    Caller sandboxRoot = callerWithUid(0);
    sandboxRoot.inOurUserNamespace = false;
    EXPECT_FALSE(sandboxRoot.isRoot());
    EXPECT_EQ(decide(sandboxRoot, Action::GetPidFd), Verdict::Allow);
}

// A decider that answers later, from the loop, as polkit does.
class LaterDecider final : public Decider {
  public:
    LaterDecider(sd_event* loop, Verdict verdict) : loop_(loop), verdict_(verdict) {}
    std::string_view name() const noexcept override { return "later"; }
    bool synchronous() const noexcept override { return false; }
    void decide(const Caller& /*caller*/, const Request& /*request*/, Answer answer) override {
        ++asked;
        answers_.push_back(std::move(answer));
        sd_event_source* source = nullptr;
        sd_event_add_defer(
            loop_, &source,
            [](sd_event_source* /*s*/, void* userdata) {
                auto* self = static_cast<LaterDecider*>(userdata);
                std::vector<Answer> due;
                due.swap(self->answers_);
                for (Answer& a : due) {
                    a(self->verdict_, "later said so");
                }
                return 0;
            },
            this);
        sources_.emplace_back(source);
    }
    int asked = 0;

  private:
    sd_event* loop_;
    Verdict verdict_;
    std::vector<Answer> answers_;
    std::vector<EventSource> sources_;
};

TEST(AuthorizerTest, RootPassesFirstThenTheDecidersInOrderAndALateAnswerComesFromTheLoop) {
    EventLoop loop;
    Config config;
    Authorizer authorizer(config);
    LaterDecider later(loop.get(), Verdict::Allow);
    authorizer.add(later);

    std::vector<Decision> decisions;
    auto record = [&](const Decision& d) { decisions.push_back(d); };
    Request own{Action::GetNamespace, targetOwnedBy(1000), {NsType::Net}, 0};
    Request other{Action::GetNamespace, targetOwnedBy(1001), {NsType::Net}, 0};

    authorizer.authorize(callerWithUid(0), other, record);
    ASSERT_EQ(decisions.size(), 1U) << "root is decided at once";
    EXPECT_EQ(decisions[0].decider, "root");
    authorizer.authorize(callerWithUid(1000), own, record);
    ASSERT_EQ(decisions.size(), 2U) << "the kernel rule is decided at once";
    EXPECT_EQ(decisions[1].decider, "kernel rule");
    EXPECT_EQ(later.asked, 0);

    authorizer.authorize(callerWithUid(1000), other, record);
    EXPECT_EQ(decisions.size(), 2U) << "the late decider answers from the loop, not within";
    EXPECT_FALSE(authorizer.decideNow(callerWithUid(1000), other))
        << "what a caller may see is never left to a late decider";
    sd_event_run(loop.get(), 0);
    ASSERT_EQ(decisions.size(), 3U);
    EXPECT_TRUE(decisions[2].allowed);
    EXPECT_EQ(decisions[2].decider, "later");
}

TEST(AuthorizerTest, ADenialNamesItsDeciderAndAChallengeAsksForInteraction) {
    EventLoop loop;
    Config config;
    Request other{Action::SendSignal, targetOwnedBy(1001), {}, 9};
    std::vector<Decision> decisions;
    auto record = [&](const Decision& d) { decisions.push_back(d); };
    {
        Authorizer authorizer(config);
        authorizer.authorize(callerWithUid(1000), other, record);
        ASSERT_EQ(decisions.size(), 1U);
        EXPECT_FALSE(decisions[0].allowed);
        EXPECT_EQ(decisions[0].error, ErrorKind::AccessDenied);
        EXPECT_EQ(decisions[0].message,
                  "Access denied: uid 1000 may not send signal 9 to pid 4711");
    }
    for (auto [verdict, kind] :
         {std::pair{Verdict::Deny, ErrorKind::AccessDenied},
          std::pair{Verdict::Challenge, ErrorKind::InteractiveAuthorizationRequired},
          std::pair{Verdict::Unavailable, ErrorKind::AccessDenied}}) {
        decisions.clear();
        Authorizer authorizer(config);
        LaterDecider later(loop.get(), verdict);
        authorizer.add(later);
        authorizer.authorize(callerWithUid(1000), other, record);
        sd_event_run(loop.get(), 0);
        ASSERT_EQ(decisions.size(), 1U);
        EXPECT_FALSE(decisions[0].allowed);
        EXPECT_EQ(decisions[0].error, kind) << decisions[0].message;
        // A denial says who and why; a challenge who.
        const char* says = verdict == Verdict::Deny        ? "(later: later said so)"
                           : verdict == Verdict::Challenge ? "(later)"
                                                           : "later said so";
        EXPECT_NE(decisions[0].message.find(says), std::string::npos) << decisions[0].message;
    }
}

}  // namespace
}  // namespace nsfd::test
