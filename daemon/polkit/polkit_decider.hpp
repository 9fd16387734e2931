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
// Checks are queued fairly (issue 22): a bound per user and in total on the
// decisions in flight to polkitd, below the bus's limit on nsfdd's pending
// replies (dbus-daemon's max_replies_per_connection, 128), so that one user's
// flood never makes the bus refuse another user's check. A user is an
// account (Caller::account()): the uids of a user namespace count as the
// namespace's user, and are keyed as "uid" below. Beyond it decisions
// wait, taken from the uids in turn; past a deeper bound per uid and in total
// they are refused with LimitExceeded (Verdict::Busy). A decision whose
// caller has gone is dropped unanswered, its place freed: when its connection
// ends (a Varlink connection closes: callerGone(); a bus name leaves the bus:
// one NameOwnerChanged match for all of nsfdd, looked up here among the
// names with decisions pending, so nothing on the bus grows with the callers),
// and, should that notice be missed, when its turn comes (GetNameOwner).
// One in flight keeps its place until polkitd answers (an interactive one is
// withdrawn, which ends its prompt at once): until then the bus counts it
// against nsfdd's pending replies whether or not nsfdd still listens.
// Root never comes here (the authorizer lets it pass first).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

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
    void callerGone(const Caller& caller) noexcept override;

    std::size_t inFlight() const noexcept { return inFlight_; }
    std::size_t waiting() const noexcept { return waiting_; }

  private:
    struct Queued {
        Caller caller;
        Request request;
        Answer answer;
        bool waited = false;
        std::string connection;  // connectionOf(caller)
    };

    struct InFlight {
        std::string connection;
        uid_t uid = 0;
        Answer answer;                    // empty once its caller has gone
        PolkitClient::CheckId check = 0;  // the one polkitd is asked; 0 before
        bool interactive = false;
    };

    // What one connection has waiting and in flight, for its departure.
    struct ConnectionCount {
        uid_t uid = 0;
        std::size_t waiting = 0;
        std::size_t inFlight = 0;
    };

    struct OwnerCheck {
        PolkitDecider* self = nullptr;
        std::uint64_t decision = 0;
        Caller caller;
        Request request;
        BusSlot slot;
    };
    static int onOwnerChecked(sd_bus_message* reply, void* userdata, sd_bus_error* error) noexcept;
    static int onNameOwnerChanged(sd_bus_message* message, void* userdata, sd_bus_error* error);
    static int onDeparturesWatched(sd_bus_message* reply, void* userdata, sd_bus_error* error);

    // The bus name, or for a Varlink caller its connection's pidfd (which
    // lives as long as the connection and as anything queued for it).
    static std::string connectionOf(const Caller& caller);
    // Drops what waits for `connection`, and leaves its decisions in flight
    // to finish unanswered.
    void dropConnection(const std::string& connection) noexcept;
    void release(const std::string& connection, bool waited) noexcept;

    // Starts decisions while there is room, taking uids in turn.
    void startWaiting();
    void start(Queued decision);
    // Asks polkitd about the decision `id` (check()), or ends it if that fails.
    void ask(std::uint64_t id, const Caller& caller, const Request& request,
             std::size_t namespaceIndex) noexcept;
    void check(std::uint64_t id, const Caller& caller, const Request& request,
               std::size_t namespaceIndex);
    void answered(std::uint64_t id, const Caller& caller, const Request& request,
                  std::size_t namespaceIndex, const PolkitAnswer& reply);
    // The end of a decision in flight: frees its place, then answers, if
    // its caller is still there.
    void finish(std::uint64_t id, Verdict verdict, std::string_view note);

    PolkitClient client_;
    sd_bus* bus_;
    Limits limits_;
    std::size_t inFlight_ = 0;
    std::size_t waiting_ = 0;
    std::map<uid_t, std::size_t> inFlightOf_;
    std::map<uid_t, std::deque<Queued>> waitingOf_;
    uid_t lastServed_ = 0;  // the queue goes round the uids from here
    std::map<std::uint64_t, InFlight> inFlightDecisions_;
    std::uint64_t nextDecision_ = 1;
    std::unordered_map<std::string, ConnectionCount> connections_;
    std::map<std::uint64_t, std::unique_ptr<OwnerCheck>> ownerChecks_;
    BusSlot departures_;  // the NameOwnerChanged match
};

}  // namespace nsfd::daemon
