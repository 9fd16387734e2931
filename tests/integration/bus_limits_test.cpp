// SPDX-License-Identifier: LGPL-2.1-or-later
// The bus's own limits, measured by going past each on the bus the tests run
// (dbus-daemon, or dbus-broker with NSFD_TEST_BUS=dbus-broker), and nsfdd's
// bounds that keep it below them, read from the structs nsfdd itself is built
// with (SECURITY.md, "Bounds"). A bus whose limits sank below nsfdd's bounds
// would let clients take nsfdd off the bus again (issue 22): this test is
// where that shows. Each measurement is printed, for SECURITY.md's table.
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "child.hpp"
#include "dbus/bus.hpp"
#include "dbus/callers.hpp"
#include "harness.hpp"
#include "nsfd/dbus_names.hpp"
#include "polkit/polkit_decider.hpp"

namespace nsfd::test {
namespace {

using daemon::BusPtr;
using daemon::CallerCache;
using daemon::PolkitDecider;

uid_t uidOf(const char* name) noexcept {
    struct passwd* pw = ::getpwnam(name);
    return pw == nullptr ? 0 : pw->pw_uid;
}
const uid_t kUser = uidOf("nsfd-test-a");

// Past each of these the probe stops and reports "at least this many".
constexpr int kMaxMatchesProbed = 20'000;
constexpr int kMaxRepliesProbed = 8'192;
constexpr int kMaxConnectionsProbed = 16'384;

// What nsfdd adds to its own bus connection beyond its subscribers' matches:
// the polkit decider's one NameOwnerChanged match for every departure
// (polkit/polkit_decider.cpp). The bus-local Disconnected match
// (dbus/endpoint.cpp) never reaches the bus.
constexpr std::size_t kNsfddFixedMatches = 1;
// What nsfdd waits for beyond its polkit checks: one synchronous call to
// systemd at a time (dbus/systemd_units.cpp). Calls to the bus driver
// (AddMatch, GetNameOwner) count against no pending-reply limit: measured below.
constexpr std::size_t kNsfddOtherPendingCalls = 1;

struct Measured {
    int count = 0;        // what the bus took before it refused
    std::string refusal;  // how it refused ("" if it never did, up to the probe's maximum)
};

std::ostream& operator<<(std::ostream& out, const Measured& m) {
    return out << m.count
               << (m.refusal.empty() ? " or more (never refused)" : ", then " + m.refusal);
}

BusPtr connect() {
    BusPtr bus = daemon::openBus(busAddress());
    const char* name = nullptr;
    daemon::checkBus(sd_bus_get_unique_name(bus.get(), &name), "Failed to get a unique name");
    return bus;
}

// The bus driver's way of saying no: the error's name, or the errno of a
// connection it dropped.
std::string refusalOf(int r, const sd_bus_error& error) {
    if (sd_bus_error_is_set(&error) != 0) {
        return error.name;
    }
    return std::string("connection closed: ") + std::strerror(-r);
}

// AddMatch on `bus` until the bus refuses one: max_match_rules_per_connection
// on dbus-daemon, the user's match quota on dbus-broker.
Measured addMatchesUntilRefused(sd_bus* bus) {
    Measured m;
    for (; m.count < kMaxMatchesProbed; ++m.count) {
        std::string rule =
            "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0=':probe." +
            std::to_string(m.count) + "'";
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                   "org.freedesktop.DBus", "AddMatch", &error, nullptr, "s",
                                   rule.c_str());
        if (r < 0) {
            m.refusal = refusalOf(r, error);
            sd_bus_error_free(&error);
            break;
        }
    }
    return m;
}

// A peer that owns nsfdd's name (the bus policy lets anyone call it), reads
// every call and answers none: as polkitd, busy, looks to nsfdd.
class SilentPeer {
  public:
    SilentPeer() : bus_(connect()) {
        daemon::checkBus(sd_bus_request_name(bus_.get(), nsfd::dbus::kBusName, 0),
                         "Failed to own the name");
        daemon::checkBus(sd_bus_add_filter(bus_.get(), nullptr, &swallow, this), "add filter");
        reader_ = std::thread([this] {
            while (!stop_) {
                while (sd_bus_process(bus_.get(), nullptr) > 0) {
                }
                sd_bus_wait(bus_.get(), 100'000);
            }
        });
    }
    SilentPeer(const SilentPeer&) = delete;
    SilentPeer& operator=(const SilentPeer&) = delete;
    ~SilentPeer() {
        stop_ = true;
        reader_.join();
    }
    int callsRead() const { return calls_; }

  private:
    static int swallow(sd_bus_message* m, void* userdata, sd_bus_error* /*error*/) {
        if (sd_bus_message_is_method_call(m, nullptr, nullptr) > 0) {
            ++static_cast<SilentPeer*>(userdata)->calls_;
            return 1;  // handled: no reply, ever
        }
        return 0;
    }

    BusPtr bus_;
    std::atomic<bool> stop_{false};
    std::atomic<int> calls_{0};
    std::thread reader_;
};

struct Refusals {
    int count = 0;
    std::string first;
    std::map<std::string, int> byName;  // for the message of a failure
};

int onReply(sd_bus_message* reply, void* userdata, sd_bus_error* /*error*/) {
    auto* refusals = static_cast<Refusals*>(userdata);
    if (const sd_bus_error* e = sd_bus_message_get_error(reply); e != nullptr) {
        std::string name = e->name != nullptr ? e->name : "";
        if (refusals->count++ == 0) {
            refusals->first = name;
        }
        ++refusals->byName[name];
    }
    return 0;
}

// Sends kMaxRepliesProbed calls that expect a reply to `peer`, which answers
// none, and counts those the bus refused: max_replies_per_connection on
// dbus-daemon. `driverAnswers` tells whether the bus driver still answered
// a GetNameOwner on the same connection with every reply slot taken.
Measured pendingRepliesUntilRefused(sd_bus* bus, bool& driverAnswers) {
    Refusals refusals;
    for (int i = 0; i < kMaxRepliesProbed; ++i) {
        daemon::checkBus(sd_bus_call_method_async(
                             bus, nullptr, nsfd::dbus::kBusName, nsfd::dbus::kManagerPath,
                             nsfd::dbus::kManagerInterface, "Probe", onReply, &refusals, ""),
                         "Failed to send a call");
    }
    // The bus handles a connection's messages in order: by this reply, it has
    // refused whichever calls it was going to.
    sd_bus_error error = SD_BUS_ERROR_NULL;
    int r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "GetNameOwner", &error, nullptr, "s",
                               nsfd::dbus::kBusName);
    driverAnswers = r >= 0;
    sd_bus_error_free(&error);
    while (sd_bus_process(bus, nullptr) > 0) {
    }
    Measured m;
    m.count = kMaxRepliesProbed - refusals.count;
    m.refusal = refusals.first;
    if (refusals.byName.size() > 1) {
        for (const auto& [name, n] : refusals.byName) {
            m.refusal +=
                (m.refusal == refusals.first ? " (" : ", ") + name + " " + std::to_string(n);
        }
        m.refusal += ")";
    }
    return m;
}

// Connections as `uid` until the bus refuses one; in a child, which holds
// them all until it reports.
Measured connectionsOfAUidUntilRefused(uid_t uid) {
    (void)busAddress();
    auto [status, out] = forkAndRead(
        [&](int report) {
            std::string line;
            if (::setgroups(0, nullptr) < 0 || ::setresgid(uid, uid, uid) < 0 ||
                ::setresuid(uid, uid, uid) < 0) {
                line = "-1 setuid";
            } else {
                std::vector<BusPtr> buses;
                std::string refusal;
                while (buses.size() < static_cast<std::size_t>(kMaxConnectionsProbed)) {
                    try {
                        buses.push_back(connect());
                    } catch (const std::system_error& e) {
                        refusal = std::string("connection closed: ") + e.code().message();
                        break;
                    }
                }
                line = std::to_string(buses.size()) + " " + refusal;
            }
            (void)!::write(report, line.data(), line.size());
            ::_exit(0);
        },
        "connections as uid " + std::to_string(uid));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    Measured m;
    std::istringstream in(out);
    in >> m.count;
    std::getline(in >> std::ws, m.refusal);
    return m;
}

const char* busName() {
    return testBusKind() == BusKind::DbusBroker ? "dbus-broker" : "dbus-daemon";
}

class BusLimitsMeasuredTest : public LeakCheckedTest {};

// nsfdd's matches: its subscribers' (each kind's bound) and its own.
TEST_F(BusLimitsMeasuredTest, NsfddsMatchesStayBelowTheMatchesTheBusAllowsAConnection) {
    const CallerCache::Limits limits;
    const std::size_t nsfddsMost = kNsfddFixedMatches + limits.subscribers + limits.rootSubscribers;
    Measured first, second;
    {
        BusPtr bus = connect();
        first = addMatchesUntilRefused(bus.get());
        // Another connection of the same uid while the first holds its
        // matches: a limit per connection (dbus-daemon) gives it as many, a
        // quota per user (dbus-broker) what the first left.
        BusPtr other = connect();
        second = addMatchesUntilRefused(other.get());
    }
    std::cout << busName() << ": match rules of a root connection: " << first
              << "; of a second one meanwhile: " << second << "\n";
    ASSERT_FALSE(first.refusal.empty()) << "the bus took " << kMaxMatchesProbed << " matches";
    EXPECT_LT(nsfddsMost, static_cast<std::size_t>(first.count))
        << "nsfdd may hold " << nsfddsMost << " matches (" << limits.subscribers << " subscribers, "
        << limits.rootSubscribers << " of root's, " << kNsfddFixedMatches << " of its own)";
    // The bus refused with an error nsfdd's install callback sees, not by
    // dropping the connection.
    EXPECT_EQ(first.refusal.rfind("org.freedesktop.DBus.Error.", 0), 0U) << first.refusal;
}

// nsfdd's calls awaiting a reply: its polkit checks in flight, and one call
// to systemd.
TEST_F(BusLimitsMeasuredTest,
       NsfddsCallsInFlightStayBelowThePendingRepliesTheBusAllowsAConnection) {
    const PolkitDecider::Limits limits;
    const std::size_t nsfddsMost = limits.inFlight + kNsfddOtherPendingCalls;
    SilentPeer peer;
    bool driverAnswers = false;
    Measured replies;
    {
        BusPtr bus = connect();
        replies = pendingRepliesUntilRefused(bus.get(), driverAnswers);
    }
    std::cout << busName() << ": pending replies of a root connection: " << replies
              << "; the driver answered meanwhile: " << (driverAnswers ? "yes" : "no") << "\n";
    EXPECT_LT(nsfddsMost, static_cast<std::size_t>(replies.count))
        << "nsfdd may wait for " << nsfddsMost << " replies (" << limits.inFlight
        << " polkit decisions in flight, " << kNsfddOtherPendingCalls << " more)";
    // nsfdd asks the driver (GetNameOwner, AddMatch) with its polkit checks in
    // flight: those calls must not need a reply slot.
    EXPECT_TRUE(driverAnswers);
    // Not every refused call reached the peer, nor any beyond the limit.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (peer.callsRead() < replies.count && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(peer.callsRead(), replies.count) << "calls the peer read, and the bus took";
}

// One user's connections: what one user brings against nsfdd. nsfdd holds no
// bus resource per caller; its per-user bounds stop a user before the bus does.
TEST_F(BusLimitsMeasuredTest, OneUsersConnectionsOutnumberNsfddsShareOfAUser) {
    if (kUser == 0) {
        GTEST_SKIP() << "user nsfd-test-a is missing (scripts/test-users)";
    }
    Measured connections = connectionsOfAUidUntilRefused(kUser);
    std::cout << busName() << ": connections of uid " << kUser << ": " << connections << "\n";
    ASSERT_FALSE(connections.refusal.empty())
        << "the bus took " << kMaxConnectionsProbed << " connections of one uid";
    EXPECT_LT(CallerCache::Limits().subscribersPerUser,
              static_cast<std::size_t>(connections.count));
    EXPECT_LT(PolkitDecider::Limits().inFlightPerUser, static_cast<std::size_t>(connections.count));
}

}  // namespace
}  // namespace nsfd::test
