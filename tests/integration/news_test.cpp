// SPDX-License-Identifier: LGPL-2.1-or-later
// Tracking belongs to someone, and news only reaches those who may see it: on
// a real bus, as real users (nsfd-test-a owns the process; nsfd-test-b may
// read info only through the "users" grant; without it, it may see nothing).
#include <poll.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

class TrackersTest : public DaemonTest {
  protected:
    std::string config() const override { return kGrantConfig; }

    void SetUp() override {
        if (kUser == 0 || kOtherUser == 0) {
            GTEST_SKIP() << "users nsfd-test-a and nsfd-test-b are missing (scripts/test-users)";
        }
        DaemonTest::SetUp();
    }

    // Runs one call as `uid` (with `groups`): "" or the D-Bus error name.
    std::string as(uid_t uid, const std::vector<gid_t>& groups,
                   const std::function<void(ManagerProxy&)>& call) {
        return asUser(uid, uid, groups, [&](sdbus::IConnection& bus) {
            ManagerProxy manager(bus, /*subscribe=*/false);
            return errorNameOf([&] { call(manager); });
        });
    }

    bool isTracked(const std::string& path) {
        for (const auto& entry : manager_->ListProcesses()) {
            if (entry.get<2>() == path) {
                return true;
            }
        }
        return false;
    }
};

TEST_F(TrackersTest, TwoUsersAndRootTrackTheSameProcessAndEachUntrackDropsOnlyItsOwn) {
    Child child = spawnAs(kUser);
    auto pid = static_cast<uint32_t>(child.pid());
    std::string path;
    EXPECT_EQ(asUser(kUser, kUser, {},
                     [&](sdbus::IConnection& bus) {
                         return std::string(ManagerProxy(bus, false).TrackProcess(pid));
                     }),
              manager_->TrackProcess(pid));
    path = manager_->TrackProcess(pid);  // root, again: still one tracking of root's
    std::vector<gid_t> users{kGrantedGroup};
    EXPECT_EQ(as(kOtherUser, users, [&](ManagerProxy& m) { m.TrackProcess(pid); }), "");

    // b drops its own; a's and root's stay.
    EXPECT_EQ(as(kOtherUser, users, [&](ManagerProxy& m) { m.UntrackProcess(path); }), "");
    EXPECT_TRUE(isTracked(path));
    // b tracks nothing now: dropping the others' needs root (or polkit's untrack-any).
    EXPECT_EQ(as(kOtherUser, users, [&](ManagerProxy& m) { m.UntrackProcess(path); }),
              err::kAccessDenied);
    EXPECT_NE(daemon_->log().find("to drop other users' tracking of pid " + std::to_string(pid)),
              std::string::npos);
    // Root tracks it too: its Untrack drops only its own.
    manager_->UntrackProcess(path);
    EXPECT_TRUE(isTracked(path)) << "a still tracks it";
    EXPECT_EQ(asUser(kUser, kUser, {},
                     [&](sdbus::IConnection& bus) {
                         return errorNameOf([&] { ProcessProxy(bus, path).Untrack(); });
                     }),
              "");
    EXPECT_FALSE(isTracked(path)) << "the object goes with its last tracker";
    child.release(0);
    child.reap();
}

TEST_F(TrackersTest, RootThatTracksNothingDropsEveryonesTracking) {
    Child child = spawnAs(kUser);
    auto pid = static_cast<uint32_t>(child.pid());
    std::string path;
    EXPECT_EQ(as(kUser, {}, [&](ManagerProxy& m) { path = m.TrackProcess(pid); }), "");
    EXPECT_EQ(as(kOtherUser, {kGrantedGroup}, [&](ManagerProxy& m) { m.TrackProcess(pid); }), "");
    path =
        std::string(nsfd::dbus::kProcessPathPrefix) + std::to_string(PidFd::open(child.pid()).id());
    manager_->UntrackProcess(path);
    EXPECT_FALSE(isTracked(path));
    EXPECT_NE(daemon_->log().find("dropped by uid 0"), std::string::npos);
    child.release(0);
    child.reap();
}

TEST_F(TrackersTest, SignalingThroughNsfdTracksNothingAndWorksAtTheQuota) {
    // The quota is 3 (kGrantConfig): fill it, then signal a fourth process.
    std::vector<Child> children;
    children.reserve(4);
    for (int i = 0; i < 4; ++i) {
        children.push_back(spawnAs(kUser));
    }
    std::string result = asUser(kUser, kUser, {}, [&](sdbus::IConnection& bus) {
        ManagerProxy manager(bus, false);
        for (int i = 0; i < 3; ++i) {
            manager.TrackProcess(static_cast<uint32_t>(children[i].pid()));
        }
        std::string out =
            errorNameOf([&] { manager.TrackProcess(static_cast<uint32_t>(children[3].pid())); });
        manager.SendSignal(static_cast<uint32_t>(children[3].pid()), SIGTERM);
        return out + ";" + std::to_string(manager.ListProcesses().size());
    });
    EXPECT_EQ(result, std::string(err::kLimitExceeded) + ";3");
    EXPECT_EQ(children[3].reap(), SIGTERM);
    for (int i = 0; i < 3; ++i) {
        children[i].release(0);
        children[i].reap();
    }
}

// -- news only for those who may see it --

// A listener as `uid`, in a child process: subscribes, matches everything
// from org.nsfd1, and records each message ("Member path [first object path
// argument]") until it hears ProcessTracked of `marker` (its own process,
// tracked last, so everything before it has arrived).
class Listener {
  public:
    Listener(uid_t uid, std::vector<gid_t> groups, pid_t marker)
        : uid_(uid), groups_(std::move(groups)), marker_(marker) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) < 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        readyRead_ = UniqueFd(fds[0]);
        readyWrite_ = UniqueFd(fds[1]);
        thread_ = std::thread([this] { result_ = run(); });
        pollfd pfd{readyRead_.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 10'000) != 1) {
            throw std::runtime_error("the listener did not get ready");
        }
    }
    ~Listener() {
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    std::vector<std::string> heard() {
        thread_.join();
        std::vector<std::string> lines;
        std::istringstream in(result_);
        for (std::string line; std::getline(in, line);) {
            lines.push_back(line);
        }
        return lines;
    }

  private:
    std::string run() {
        int ready = readyWrite_.get();
        return asUser(uid_, uid_, groups_, [&](sdbus::IConnection& bus) {
            std::vector<std::string> heard;
            bool done = false;
            std::string markerPath;
            auto match = bus.addMatch("sender='org.nsfd1'", [&](sdbus::Message& message) {
                std::string line = message.getMemberName() + " " + message.getPath();
                std::string member = message.getMemberName();
                if (member == "ProcessTracked" || member == "ProcessUntracked" ||
                    member == "ProcessExited" || member == "InterfacesAdded" ||
                    member == "InterfacesRemoved") {
                    sdbus::ObjectPath about;
                    message >> about;
                    line += " " + std::string(about);
                    if (member == "ProcessTracked") {
                        uint32_t pid = 0;
                        message >> pid;
                        if (pid == static_cast<uint32_t>(marker_)) {
                            done = true;
                            return;
                        }
                    }
                }
                heard.push_back(line);
            });
            ManagerProxy manager(bus);  // subscribes
            (void)!::write(ready, "r", 1);
            if (!waitUntil(
                    bus, [&] { return done; }, std::chrono::seconds(20))) {
                return std::string("timeout\n");
            }
            std::string out;
            for (const std::string& line : heard) {
                out += line + "\n";
            }
            return out;
        });
    }

    uid_t uid_;
    std::vector<gid_t> groups_;
    pid_t marker_;
    UniqueFd readyRead_;
    UniqueFd readyWrite_;
    std::thread thread_;
    std::string result_;
};

TEST_F(TrackersTest, AListenerLearnsNothingOfAProcessItMayNotSeeAndASubscriberHearsEachEventOnce) {
    if (!kernelFeatures().exitInfo) {
        GTEST_SKIP() << "kernel lacks PIDFD_INFO_EXIT (6.15+)";
    }
    Child watched = spawnAs(kUser);
    Child ownerMarker = spawnAs(kUser);
    Child strangerMarker = spawnAs(kOtherUser);
    Listener owner(kUser, {}, ownerMarker.pid());
    Listener stranger(kOtherUser, {}, strangerMarker.pid());

    // Tracked by root, then exits and is reaped; retention (1 s) ends.
    std::string path = manager_->TrackProcess(static_cast<uint32_t>(watched.pid()));
    auto proxy = process(path);
    watched.release(7);
    watched.awaitExit();
    ASSERT_TRUE(waitUntil([&] { return proxy->State() == "exited"; }));
    EXPECT_EQ(watched.reap(), 7 << 8);
    ASSERT_TRUE(waitUntil([&] { return !manager_->removed.empty(); }));
    manager_->TrackProcess(static_cast<uint32_t>(ownerMarker.pid()));
    manager_->TrackProcess(static_cast<uint32_t>(strangerMarker.pid()));

    std::vector<std::string> strangerHeard = stranger.heard();
    for (const std::string& line : strangerHeard) {
        EXPECT_EQ(line.find(path), std::string::npos) << "b heard of a's process: " << line;
    }
    EXPECT_EQ(std::count(strangerHeard.begin(), strangerHeard.end(), "timeout"), 0);

    std::vector<std::string> expected = {
        "ProcessTracked /org/nsfd1 " + path,
        "PropertiesChanged " + path,  // exited
        "ProcessExited /org/nsfd1 " + path,
        "PropertiesChanged " + path,  // reaped
        "Exited " + path,
        "ProcessUntracked /org/nsfd1 " + path,
    };
    std::vector<std::string> ownerHeard;
    for (const std::string& line : owner.heard()) {
        if (line.find(path) != std::string::npos) {
            ownerHeard.push_back(line);
        }
    }
    EXPECT_EQ(ownerHeard, expected);
    // Root's generic ObjectManager client heard InterfacesAdded/Removed (broadcast, root only).
    EXPECT_FALSE(manager_->added.empty());
    for (Child* child : {&ownerMarker, &strangerMarker}) {
        child->release(0);
        child->reap();
    }
}

}  // namespace
}  // namespace nsfd::test
