// SPDX-License-Identifier: LGPL-2.1-or-later
// polkit as the authorization step's last decider: asked only when the kernel
// rule and nsfdd.conf's grants did not allow a call, asynchronously (the loop
// serves other callers meanwhile), with nsfdd's own timeout. The actions are
// systemd/org.nsfd1.policy; each check passes the details rules read with
// action.lookup(): pid, id, uid (the target's real uid), namespace, signal,
// caller-sandboxed ("true" for a caller in another user namespace than
// nsfdd's), caller-user-namespace and caller-pid-namespace (NS_GET_IDs, "0"
// if unknown), target-visible ("true" if the caller could name the target).
// The subject is the caller's process (unix-process: pid, start time, uid),
// held by a pidfd since its connection was first seen; if that process has
// exited (before or during the check), polkit's answer is not taken: Deny.
//
// Checks are queued fairly (issue 22): a bound per uid and in total on the
// decisions in flight to polkitd, below the bus's limit on nsfdd's pending
// replies (dbus-daemon's max_replies_per_connection, 128), so that one user's
// flood never makes the bus refuse another user's check. Beyond it decisions
// wait, taken from the uids in turn; past a deeper bound per uid and in total
// they are refused with LimitExceeded (Verdict::Busy). A decision whose
// caller has gone by the time its turn comes is dropped without asking polkitd.
// Root never comes here (the authorizer lets it pass first).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <string_view>

#include "core/authorizer.hpp"
#include "polkit.hpp"

namespace nsfd::daemon {

// The polkit action of an authorization step's action; "" for one polkit
// never decides (GetFd stays root's).
std::string_view polkitActionOf(Action action) noexcept;

class PolkitDecider final : public Decider {
  public:
    // README "Limits"; each is a number of decisions (a GetNamespace of
    // several types is one decision, its checks asked one after another).
    struct Limits {
        std::size_t inFlightPerUser = 8;
        std::size_t inFlight = 64;  // below max_replies_per_connection (128)
        std::size_t waitingPerUser = 1024;
        std::size_t waiting = 8192;
    };

    PolkitDecider(sd_bus* bus, PolkitClient::Options options, Limits limits);
    PolkitDecider(sd_bus* bus, PolkitClient::Options options)
        : PolkitDecider(bus, options, Limits()) {}
    // Waiting decisions are dropped unanswered, as the checks in flight are.
    ~PolkitDecider() override;
    PolkitDecider(const PolkitDecider&) = delete;
    PolkitDecider& operator=(const PolkitDecider&) = delete;

    std::string_view name() const noexcept override { return "polkit"; }
    bool synchronous() const noexcept override { return false; }
    // Each namespace type of a GetNamespace is one check, in turn: all must pass.
    void decide(const Caller& caller, const Request& request, Answer answer) override;

    std::size_t inFlight() const noexcept { return inFlight_; }
    std::size_t waiting() const noexcept { return waiting_; }

  private:
    struct Queued {
        Caller caller;
        Request request;
        Answer answer;
        bool waited = false;
    };

    struct OwnerCheck {
        PolkitDecider* self = nullptr;
        std::uint64_t key = 0;
        Caller caller;
        Request request;
        Answer done;
        BusSlot slot;
    };
    static int onOwnerChecked(sd_bus_message* reply, void* userdata, sd_bus_error* error) noexcept;

    // Starts decisions while there is room, taking uids in turn.
    void startWaiting();
    void start(Queued decision);
    void check(const Caller& caller, const Request& request, std::size_t namespaceIndex,
               Answer answer);
    // The end of a decision in flight: frees its place, then answers.
    void finish(uid_t uid, const Answer& answer, Verdict verdict, std::string_view note);

    PolkitClient client_;
    sd_bus* bus_;
    Limits limits_;
    std::size_t inFlight_ = 0;
    std::size_t waiting_ = 0;
    std::map<uid_t, std::size_t> inFlightOf_;
    std::map<uid_t, std::deque<Queued>> waitingOf_;
    uid_t lastServed_ = 0;  // the queue goes round the uids from here
    std::map<std::uint64_t, std::unique_ptr<OwnerCheck>> ownerChecks_;
    std::uint64_t nextOwnerCheck_ = 1;
};

}  // namespace nsfd::daemon
