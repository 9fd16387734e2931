// SPDX-License-Identifier: LGPL-2.1-or-later
// Restart without loss: the test plays systemd's side of the fd store.
#include <sys/mman.h>

#include <sstream>

#include <algorithm>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

class RestartTest : public DaemonTest {};

TEST_F(RestartTest, Kill9With1000TrackedProcessesLosesNothing) {
    if (!kernelFeatures().exitInfo) {
        GTEST_SKIP() << "kernel lacks PIDFD_INFO_EXIT (6.15+): no exit statuses to keep";
    }
    constexpr int kCount = 1000;
    std::vector<Child> children;
    std::vector<std::string> paths;
    children.reserve(kCount);
    for (int i = 0; i < kCount; ++i) {
        children.push_back(Child::spawn());
        paths.push_back(manager_->TrackProcess(static_cast<uint32_t>(children.back().pid())));
    }
    // One pidfd per process, the state table, the accounts and the subscribers.
    ASSERT_EQ(daemon_->fdStoreSize(), static_cast<std::size_t>(kCount) + 3);
    Daemon::FdStore store = daemon_->takeFdStore();
    daemon_->kill9();  // manager_ stays: a client listening all along

    // While it is down: 300 exit; 200 of those are reaped, 100 stay zombies.
    std::vector<int> statuses(kCount, -1);
    for (int i = 0; i < 300; ++i) {
        children[i].release(i % 256);
    }
    for (int i = 0; i < 300; ++i) {
        children[i].awaitExit();
        if (i < 200) {
            statuses[i] = children[i].reap();
        }
    }

    daemon_ = std::make_unique<Daemon>(busAddress(),
                                       Daemon::Options{config(), std::move(store), "debug", 0, ""});
    EXPECT_EQ(manager_->Get(nsfd::dbus::kManagerInterface, "TrackedProcesses").get<uint32_t>(),
              static_cast<uint32_t>(kCount));
    for (int i = 0; i < kCount; ++i) {
        auto proxy = process(paths[i]);
        std::string expected = i < 200 ? "reaped" : i < 300 ? "exited" : "running";
        ASSERT_EQ(proxy->State(), expected) << "process " << i;
        ASSERT_EQ(proxy->ExitStatus(), i < 200 ? statuses[i] : -1) << "process " << i;
        ASSERT_EQ(proxy->Pid(), static_cast<uint32_t>(children[i].pid()));
    }
    EXPECT_EQ(daemon_->fdStoreSize(), static_cast<std::size_t>(kCount) + 3)
        << "restored fds stay in the store, nothing more is added";

    // The zombies, reaped now, are reported as before the restart; so are the
    // 200 reaped while nsfdd was down, to the subscription it kept.
    for (int i = 200; i < 300; ++i) {
        statuses[i] = children[i].reap();
    }
    ASSERT_TRUE(waitUntil([&] { return manager_->exits.size() >= 300; }))
        << manager_->exits.size() << " of the 300 ProcessExited signals arrived";
    EXPECT_EQ(manager_->exits.size(), 300U) << "each exit once";
    for (const ExitSignal& exit : manager_->exits) {
        auto it = std::find(paths.begin(), paths.end(), std::string(exit.path));
        ASSERT_NE(it, paths.end());
        EXPECT_EQ(exit.waitStatus, statuses[it - paths.begin()]);
    }
    for (int i = 300; i < kCount; ++i) {
        children[i].release(0);
    }
}

TEST_F(RestartTest, UnknownInheritedFdsAreClosedAndLogged) {
    manager_.reset();
    daemon_.reset();  // this test starts its own
    Child child = Child::spawn();
    PidFd pidfd = PidFd::open(child.pid());
    // A state table (16-byte records: id, pid, uid) naming one process whose
    // pidfd is handed back under its name but is another process's.
    struct {
        std::uint64_t id;
        std::int32_t pid;
        std::uint32_t uid;
    } record = {pidfd.id() + 1, child.pid(), 0};
    UniqueFd state(::memfd_create("state", MFD_CLOEXEC));
    ASSERT_EQ(::write(state.get(), &record, sizeof(record)), 16);
    std::stringstream wrongName;
    wrongName << std::hex << record.id;

    Daemon::FdStore store;
    store["state"] = std::move(state);
    store["1"] = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));  // not in the table
    store["something-else"] = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    store[wrongName.str()] = UniqueFd(pidfd.release());
    Daemon restarted(busAddress(), Daemon::Options{"", std::move(store), "debug", 0, ""});
    ManagerProxy manager(*connection_);
    EXPECT_EQ(manager.ListProcesses().size(), 0U);
    std::string log = restarted.log();
    for (const std::string& name : {std::string("something-else"), std::string("1")}) {
        EXPECT_NE(log.find("Closing inherited fd '" + name + "': not a process nsfdd stored"),
                  std::string::npos)
            << log;
    }
    EXPECT_NE(log.find("Closing inherited fd '" + wrongName.str() + "': its pidfd is of process"),
              std::string::npos)
        << log;
    // All three are dropped from the store; the state table and the files stay.
    std::vector<std::string> names = restarted.fdStoreNames();
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"accounts", "state", "subscribers"}));
    child.release(0);
    child.reap();
}

}  // namespace
}  // namespace nsfd::test
