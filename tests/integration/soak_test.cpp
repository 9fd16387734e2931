// SPDX-License-Identifier: LGPL-2.1-or-later
// Soak: four clients call every kind of method, some hanging up mid-call,
// while processes are tracked and exit at 200 a second or more. Pass: no
// unexpected error, every exit reported exactly once with its status, and
// nsfdd's fds and memory back to where they were.
//
// NSFD_SOAK_SECONDS (default 30) sets the length; README says how to run it longer.
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

using Clock = std::chrono::steady_clock;

// Errors a caller must expect while processes come and go under it.
bool isRaceError(const std::string& name) {
    return name == err::kNoSuchProcess || name == err::kProcessExited || name == err::kNotTracked ||
           name == "org.freedesktop.DBus.Error.UnknownObject";
}

// One client: random calls on whatever is tracked until `deadline`; every 50th
// call it hangs up with a call in flight and connects again. Reports
// "CALLS UNEXPECTED [first unexpected error]".
std::string runClient(unsigned seed, Clock::time_point deadline) {
    std::mt19937 rng(seed);
    auto below = [&](unsigned n) { return std::uniform_int_distribution<unsigned>(0, n - 1)(rng); };
    long calls = 0, unexpected = 0;
    std::string first;
    auto connection = connectToBus();
    auto manager = std::make_unique<ManagerProxy>(*connection);
    while (Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(500));  // leave the CPUs some air
        auto list = manager->ListProcesses();
        ++calls;
        if (list.empty()) {
            continue;
        }
        const auto& entry = list[below(static_cast<unsigned>(list.size()))];
        uint32_t pid = entry.get<0>();
        std::string path = entry.get<2>();
        try {
            ++calls;
            switch (below(12)) {
                case 0:
                    manager->GetNamespace(pid, "net");
                    break;
                case 1:
                    manager->GetNamespaces(pid, {});
                    break;
                case 2:
                    manager->GetProcessInfo(pid);
                    break;
                case 3:
                    manager->GetProcess(pid);
                    break;
                case 4:
                    manager->TrackProcess(pid);
                    break;
                case 5:
                    ProcessProxy(*connection, path).GetInfo();
                    break;
                case 6:
                    ProcessProxy(*connection, path).GetNamespaceIds();
                    break;
                case 7:
                    ProcessProxy(*connection, path).GetNamespace("uts");
                    break;
                case 8:
                    ProcessProxy(*connection, path).GetPidFd();
                    break;
                case 9:
                    ProcessProxy(*connection, path).State();
                    break;
                case 10:
                    manager->Get(dbus::kManagerInterface, "TrackedProcesses");
                    break;
                default: {
                    // Hang up with a call in flight.
                    auto proxy = sdbus::createProxy(*connection, dbus::kBusName, path);
                    proxy->callMethodAsync("GetNamespaces")
                        .onInterface(dbus::kProcessInterface)
                        .withArguments(std::vector<std::string>{})
                        .uponReplyInvoke([](const sdbus::Error*,
                                            const std::map<std::string, sdbus::UnixFd>&) {});
                    proxy.reset();
                    manager.reset();
                    connection = connectToBus();
                    manager = std::make_unique<ManagerProxy>(*connection);
                    break;
                }
            }
        } catch (const sdbus::Error& e) {
            if (!isRaceError(e.getName())) {
                ++unexpected;
                if (first.empty()) {
                    first = e.getName() + ": " + e.getMessage();
                }
            }
        }
    }
    return std::to_string(calls) + " " + std::to_string(unexpected) + " " + first;
}

class SoakTest : public DaemonTest {
  protected:
    std::string config() const override { return "[limits]\nretention-seconds = 1\n"; }
};

TEST_F(SoakTest, FourClientsWhileProcessesComeAndGo) {
    const char* env = std::getenv("NSFD_SOAK_SECONDS");
    auto seconds = std::chrono::seconds(env != nullptr ? std::atoi(env) : 30);
    // Warm up (allocations nsfdd makes once), then take the baseline.
    for (int i = 0; i < 50; ++i) {
        Child child = Child::spawn();
        manager_->TrackProcess(static_cast<uint32_t>(child.pid()));
        manager_->GetNamespaces(static_cast<uint32_t>(child.pid()), {});
        child.release(0);
        child.reap();
    }
    ASSERT_TRUE(waitUntil([&] { return manager_->ListProcesses().empty(); }));
    manager_->exits.clear();
    int fdsBefore = daemon_->openFdCount();
    long rssBefore = rssKiB(daemon_->pid());

    Clock::time_point start = Clock::now();
    Clock::time_point deadline = start + seconds;
    std::vector<std::pair<UniqueFd, pid_t>> clients;
    for (unsigned i = 0; i < 4; ++i) {
        int out[2];
        ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
        UniqueFd readEnd(out[0]), writeEnd(out[1]);
        pid_t pid = test::forkProcess();
        if (pid == 0) {
            std::string report = runClient(i + 1, deadline);
            (void)!::write(writeEnd.get(), report.data(), report.size());
            ::_exit(0);
        }
        clients.emplace_back(std::move(readEnd), pid);
    }

    // Processes, sixteen at a time: forked to wait on a pipe, tracked (sixteen
    // calls in flight at once, as a busy container manager would), let go (each
    // with its own exit code) by closing the pipe, reaped.
    std::map<std::string, int> expected;  // path -> wait status
    long spawned = 0;
    auto tracker = sdbus::createProxy(*connection_, dbus::kBusName, dbus::kManagerPath);
    while (Clock::now() < deadline) {
        int hold[2];
        ASSERT_EQ(::pipe2(hold, O_CLOEXEC), 0);
        UniqueFd waitEnd(hold[0]), releaseEnd(hold[1]);
        std::vector<pid_t> batch;
        for (int i = 0; i < 16; ++i) {
            int code = static_cast<int>(spawned++ % 250);
            pid_t pid = test::forkProcess();
            if (pid == 0) {
                releaseEnd.reset();
                char c;
                (void)!::read(waitEnd.get(), &c, 1);  // EOF: let go
                ::_exit(code);
            }
            batch.push_back(pid);
        }
        std::map<pid_t, std::string> paths;
        std::string trackError;
        for (pid_t pid : batch) {
            tracker->callMethodAsync("TrackProcess")
                .onInterface(dbus::kManagerInterface)
                .withArguments(static_cast<uint32_t>(pid))
                .uponReplyInvoke(
                    [&, pid](const sdbus::Error* error, const sdbus::ObjectPath& path) {
                        if (error != nullptr) {
                            trackError = error->getName() + ": " + error->getMessage();
                        }
                        paths[pid] = path;
                    });
        }
        ASSERT_TRUE(waitUntil([&] { return paths.size() == batch.size(); }));
        ASSERT_EQ(trackError, "");
        releaseEnd.reset();
        for (pid_t pid : batch) {
            expected[paths[pid]] = reapWithin(pid, "a released process to exit");
        }
        while (connection_->processPendingRequest()) {
        }
    }
    double perSecond =
        static_cast<double>(spawned) / std::chrono::duration<double>(Clock::now() - start).count();

    long calls = 0;
    for (auto& [out, pid] : clients) {
        char buf[512] = {};
        (void)!::read(out.get(), buf, sizeof(buf) - 1);
        reapWithin(pid, "client " + std::to_string(pid) + " to exit");
        std::istringstream report(buf);
        long clientCalls = 0, unexpected = 0;
        report >> clientCalls >> unexpected;
        std::string first;
        std::getline(report, first);
        calls += clientCalls;
        EXPECT_EQ(unexpected, 0) << "a client got" << first;
    }
    std::cerr << "soak: " << spawned << " processes (" << perSecond << "/s), " << calls
              << " client calls in " << seconds.count() << " s\n";

    // Every exit reported exactly once, with its status.
    ASSERT_TRUE(waitUntil([&] { return manager_->exits.size() >= expected.size(); }));
    test::waitUntil(
        *connection_, [] { return false; }, std::chrono::milliseconds(200));
    EXPECT_EQ(manager_->exits.size(), expected.size());
    std::map<std::string, int> reported;
    for (const ExitSignal& exit : manager_->exits) {
        EXPECT_EQ(++reported[exit.path], 1) << exit.path << " reported twice";
        auto it = expected.find(exit.path);
        ASSERT_NE(it, expected.end()) << exit.path;
        EXPECT_EQ(exit.waitStatus, it->second) << exit.path;
    }

    // Retention over: nothing tracked, nothing held.
    ASSERT_TRUE(waitUntil([&] { return manager_->ListProcesses().empty(); }));
    EXPECT_TRUE(waitUntil([&] { return daemon_->openFdCount() <= fdsBefore; }))
        << daemon_->openFdCount() << " fds open, " << fdsBefore << " before";
    long rssAfter = rssKiB(daemon_->pid());
    std::cerr << "soak: nsfdd RSS " << rssBefore << " KiB before, " << rssAfter << " KiB after\n";
    // (Not under ASan, whose quarantine holds freed memory back on purpose.)
    EXPECT_TRUE(NSFD_TEST_SANITIZED || rssAfter <= rssBefore + 4 * 1024)
        << "nsfdd grew by " << rssAfter - rssBefore << " KiB";
}

}  // namespace
}  // namespace nsfd::test
