// SPDX-License-Identifier: LGPL-2.1-or-later
// Crowds of bus connections as one user, for the tests of nsfdd's bounds
// (limits_test.cpp) and the load test (load_test.cpp).
#pragma once

#include <grp.h>
#include <poll.h>
#include <sys/wait.h>

#include <csignal>
#include <optional>
#include <sstream>
#include <tuple>

#include "fixture.hpp"

namespace nsfd::test {

// A crowd of bus connections as one uid, in a child process: it opens up to
// `connections` connections (as many as the bus allows), makes `call` on each,
// reports "opened answered firstError", and keeps them all open until
// release() (SIGTERM: a pipe's end would be inherited by the next crowd).
class Crowd {
  public:
    using Call = std::function<void(sdbus::IProxy&)>;

    // `pump`: the child then processes replies on every connection all along
    // (what `call` set up to happen on them, such as sending again).
    Crowd(uid_t uid, int connections, const Call& call, bool pump = false) {
        (void)busAddress();  // started, its address set, before the fork
        child_.emplace([&](int report) {
            try {
                run(uid, connections, call, pump, report);
            } catch (...) {
                // Nothing may unwind into the test's copy of itself.
                (void)!::write(report, "-1 -1 exception\n", 16);
                ::_exit(1);
            }
        });
    }

    // Waits for the report: {opened, answered, first error name}.
    std::tuple<int, int, std::string> awaitReport() {
        std::istringstream in(child_->awaitLine("a crowd of connections to report"));
        int opened = -1, answered = -1;
        std::string error;
        in >> opened >> answered >> error;
        return {opened, answered, error == "-" ? "" : error};
    }

    // Closes every connection and reaps the child.
    void release() { child_->release("a crowd of connections to hang up"); }

  private:
    static void run(uid_t uid, int connections, const Call& call, bool pump, int report) {
        std::vector<std::unique_ptr<sdbus::IConnection>> buses;
        std::vector<std::unique_ptr<sdbus::IProxy>> proxies;
        int answered = 0;
        std::string firstError = "-";
        if (::setgroups(0, nullptr) < 0 || ::setresgid(uid, uid, uid) < 0 ||
            ::setresuid(uid, uid, uid) < 0) {
            firstError = "setuid";
        } else {
            for (int i = 0; i < connections; ++i) {
                try {
                    buses.push_back(connectToBus());
                } catch (const sdbus::Error&) {
                    break;  // the bus's limit of connections per uid
                }
                try {
                    proxies.push_back(sdbus::createProxy(*buses.back(), nsfd::dbus::kBusName,
                                                         nsfd::dbus::kManagerPath));
                    call(*proxies.back());
                    ++answered;
                } catch (const sdbus::Error& e) {
                    if (firstError == "-") {
                        firstError = e.getName();
                    }
                }
            }
        }
        std::string line =
            std::to_string(buses.size()) + " " + std::to_string(answered) + " " + firstError + "\n";
        (void)!::write(report, line.data(), line.size());
        while (!pump) {  // NOLINT(bugprone-infinite-loop): ends with the child, at release()
            ::pause();   // until release()
        }
        std::vector<pollfd> fds(buses.size());
        for (;;) {  // until release()
            for (std::size_t i = 0; i < buses.size(); ++i) {
                while (buses[i]->processPendingRequest()) {
                }
                fds[i] = {buses[i]->getEventLoopPollData().fd, POLLIN, 0};
            }
            ::poll(fds.data(), fds.size(), 100);
        }
    }

    std::optional<ReportingChild> child_;
};

inline void listProcesses(sdbus::IProxy& proxy) {
    auto call = proxy.createMethodCall(nsfd::dbus::kManagerInterface, "ListProcesses");
    proxy.callMethod(call);
}

inline void subscribe(sdbus::IProxy& proxy) {
    auto call = proxy.createMethodCall(nsfd::dbus::kManagerInterface, "Subscribe");
    proxy.callMethod(call);
}

// Keeps `calls` GetNamespace(pid, "uts") in flight on the connection: each
// reply (polkit says no) is followed by a new call. For a crowd that pumps.
inline void sendAgainOnReply(sdbus::IProxy& proxy, pid_t pid) {
    auto call = proxy.createMethodCall(nsfd::dbus::kManagerInterface, "GetNamespace");
    call << static_cast<uint32_t>(pid) << std::string("uts");
    (void)proxy.callMethod(
        call,
        [&proxy, pid](sdbus::MethodReply&, const sdbus::Error*) { sendAgainOnReply(proxy, pid); },
        std::chrono::minutes(5));
}

inline Crowd::Call keepInFlight(pid_t pid, int calls) {
    return [pid, calls](sdbus::IProxy& proxy) {
        for (int i = 0; i < calls; ++i) {
            sendAgainOnReply(proxy, pid);
        }
    };
}

}  // namespace nsfd::test
