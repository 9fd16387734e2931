// SPDX-License-Identifier: LGPL-2.1-or-later
// polkit's CheckAuthorization, asked without ever waiting on the loop: the
// answer comes to a callback, from the loop, like any other event.
#pragma once

#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>

#include "core/caller.hpp"  // processStartTime
#include "core/event_loop.hpp"
#include "dbus/bus.hpp"  // owners of sd-bus objects: polkitd is asked over nsfdd's bus connection

namespace nsfd::daemon {

// A D-Bus caller, by its unique name: polkitd asks the bus who it is, as systemd does.
struct PolkitBusName {
    std::string name;  // ":1.42"
};

// A process (a Varlink caller). polkit 122 knows no pidfd key: the start time
// is what guards the pid against reuse.
struct PolkitProcess {
    pid_t pid = 0;
    std::uint64_t startTime = 0;  // processStartTime(pid)
    uid_t uid = 0;
};

using PolkitSubject = std::variant<PolkitBusName, PolkitProcess>;

struct PolkitRequest {
    PolkitSubject subject;
    std::string action;                          // "org.nsfd1.get-namespace"
    std::map<std::string, std::string> details;  // what rules read with action.lookup()
    // The caller allowed interactive authorization: polkit may have an
    // authentication agent ask for a password before it answers.
    bool allowInteraction = false;
};

enum class PolkitResult {
    Authorized,
    Challenge,      // would be authorized after authentication, which was not allowed or failed
    NotAuthorized,  // a rule or the action's defaults said no
    Unavailable,    // no answer: polkitd not installed, not running, failing, or too slow
};

const char* toString(PolkitResult result) noexcept;

struct PolkitAnswer {
    PolkitResult result = PolkitResult::Unavailable;
    std::string message;                         // for Unavailable: what went wrong
    std::map<std::string, std::string> details;  // polkit's, e.g. "polkit.dismissed"
};

class PolkitClient final {
  public:
    using Callback = std::function<void(const PolkitAnswer&)>;
    using CheckId = std::uint64_t;

    struct Options {
        // polkitd answers a check in a millisecond or so; no answer means it
        // hangs. nsfdd must give up, and say so with a named error, before
        // its own caller's call times out (25 s, the default of sd-bus and
        // libdbus): 20 s leaves that margin.
        std::chrono::microseconds timeout = std::chrono::seconds(20);
        // With interaction a person reads a prompt and types a password. The
        // caller's call must allow as long (nsfdctl sets its call timeout to match).
        std::chrono::microseconds interactiveTimeout = std::chrono::minutes(2);
    };

    // `bus` must be attached to an sd-event loop: every callback runs from it.
    // Throws std::system_error.
    PolkitClient(sd_bus* bus, Options options);
    explicit PolkitClient(sd_bus* bus) : PolkitClient(bus, Options()) {}
    // Forgets every pending check: no callback runs afterwards.
    ~PolkitClient();
    PolkitClient(const PolkitClient&) = delete;
    PolkitClient& operator=(const PolkitClient&) = delete;
    PolkitClient(PolkitClient&&) = delete;
    PolkitClient& operator=(PolkitClient&&) = delete;

    // Asks polkitd. `done` runs exactly once, later, from the loop (never
    // within check()), unless cancel() or the destructor comes first. It must
    // not throw; it may call check() and cancel(), and may destroy the client.
    // When polkitd is not running the answer is Unavailable at once: the call
    // never waits for bus activation. Throws std::system_error (out of memory).
    CheckId check(const PolkitRequest& request, Callback done);

    // Forgets a pending check: its callback never runs. An interactive check
    // is also withdrawn from polkitd, which closes its password prompt.
    // Ids that are not pending are ignored.
    void cancel(CheckId id) noexcept;

    // Asks polkitd to end an interactive check now, which closes its password
    // prompt; the callback still runs, with polkitd's answer (an error). A
    // check that is not interactive is left alone: polkitd answers it within
    // milliseconds, and until then the bus counts it against nsfdd's pending
    // replies whether or not nsfdd still listens. Ids that are not pending are ignored.
    void withdraw(CheckId id) noexcept;

    std::size_t pendingCount() const noexcept { return pending_.size(); }

  private:
    struct Pending;

    static int onReply(sd_bus_message* reply, void* userdata, sd_bus_error* error) noexcept;
    static int onFailedToSend(sd_event_source* source, void* userdata) noexcept;
    // Runs the callback of a pending check and forgets it.
    void finish(CheckId id, const PolkitAnswer& answer) noexcept;
    // Tells polkitd to drop an interactive check; sends and forgets.
    void withdraw(const Pending& pending) noexcept;

    sd_bus* bus_;
    sd_event* event_;
    Options options_;
    std::map<CheckId, std::unique_ptr<Pending>> pending_;
};

}  // namespace nsfd::daemon
