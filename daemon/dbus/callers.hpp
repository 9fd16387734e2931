// SPDX-License-Identifier: LGPL-2.1-or-later
// Who is calling: sd-bus's word on each sender (sd_bus_query_sender_creds),
// asked once per connection and kept in a bounded cache. Unique names are
// never reused on a bus, so a cached caller needs no notice of its departure:
// an entry the cache evicted is asked for again, and one whose connection left
// is never looked up again. Nothing here grows with the number of callers but
// that cache: a bus match per caller (sd_bus_track) would, and the bus refuses
// matches past its limit (dbus-daemon: 512 per connection), which sd-bus
// answers by dropping nsfdd's whole connection.
//
// Subscribers to nsfdd's news (Manager.Subscribe) are the exception: each
// needs a match on its departure, so they are few and bounded, per uid and in
// total, with room kept for root (Limits). A match the bus refuses refuses
// only that subscription.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "bus.hpp"
#include "core/caller.hpp"
#include "core/event_loop.hpp"

namespace nsfd::daemon {

class CallerCache final {
  public:
    // The bounds (README "Limits"). Subscribers' matches (one each, 240 at
    // most) stay below both buses' match limits: dbus-daemon's
    // max_match_rules_per_connection is 512 (its built-in default, which
    // Debian's system.conf keeps), dbus-broker-launch's default 256.
    struct Limits {
        std::size_t cached = 4096;            // callers remembered (LRU)
        std::size_t subscribersPerUser = 16;  // per uid other than root
        std::size_t subscribers = 192;        // all uids but root together
        std::size_t rootSubscribers = 48;     // root's own, beyond the others'
    };

    struct Subscriber {
        CallerCache* cache = nullptr;
        std::string name;
        Caller caller;
        BusSlot gone;                 // its NameOwnerChanged match
        BusSlot ownerCheck;           // GetNameOwner: whether it left before the match was in place
        BusMessage pendingSubscribe;  // the Subscribe call, answered once the match is in place
    };

    CallerCache(sd_bus* bus, Limits limits);
    explicit CallerCache(sd_bus* bus) : CallerCache(bus, Limits()) {}
    CallerCache(const CallerCache&) = delete;
    CallerCache& operator=(const CallerCache&) = delete;

    // The sender of `call`, with the call's own flags (interactive
    // authorization). Throws ServiceError(AccessDenied) if sd-bus cannot say who it is.
    Caller callerOf(sd_bus_message* call);

    // Manager.Subscribe: replies to `call` itself, once the bus has put the
    // match on the subscriber's departure in place (or with LimitExceeded if
    // the bus refused it). Throws ServiceError(LimitExceeded) past the
    // subscriber's uid's share or the total. Returns what a handler returns.
    int subscribe(sd_bus_message* call);
    // Manager.Unsubscribe; nothing if the sender did not subscribe.
    void unsubscribe(sd_bus_message* call);
    // Keeps the subscribers' names in `file` (the fd store's "subscribers"),
    // and first takes back those a previous nsfdd kept there that are still
    // on the bus: their subscriptions survive a restart of nsfdd.
    void keepSubscribersIn(int file);
    // Every subscriber whose match is in place, for the news.
    template <typename Fn>
    void forEachSubscriber(Fn&& fn) const {
        for (const auto& [name, subscriber] : subscribers_) {
            if (!subscriber->pendingSubscribe) {
                fn(*subscriber);
            }
        }
    }
    std::size_t cachedCount() const noexcept { return cached_.size(); }
    std::size_t subscriberCount() const noexcept { return subscribers_.size(); }

  private:
    struct Cached {
        Caller caller;
        std::list<std::string>::iterator age;
    };

    const Caller& lookUp(sd_bus_message* call);
    void remember(const std::string& name, const Caller& caller);
    // Adds a subscriber and asks the bus for its match. Throws
    // ServiceError(LimitExceeded) past the bounds, std::system_error.
    Subscriber& addSubscriber(const std::string& name, const Caller& caller);
    Caller callerFrom(sd_bus_creds* creds, int r, const std::string& name);
    void saveSubscribers();
    static int onNameOwnerChanged(sd_bus_message* message, void* userdata, sd_bus_error* error);
    static int onMatchInstalled(sd_bus_message* reply, void* userdata, sd_bus_error* error);
    static int onOwnerChecked(sd_bus_message* reply, void* userdata, sd_bus_error* error);
    void armSweep();
    static int onSweep(sd_event_source* source, std::uint64_t usec, void* userdata);
    void forget(const std::string& name);

    int subscribersFile_ = -1;  // owned by the fd store
    sd_bus* bus_;
    OwnNamespaces own_;  // nsfdd's pid and user namespaces
    Limits limits_;
    std::unordered_map<std::string, Cached> cached_;
    std::list<std::string> ages_;  // least recently used first
    // Each cached caller holds its process's pidfd (core/caller.hpp); once that
    // process has exited, its entry goes, with the fd, at the next sweep (a
    // second apart): the connection, if it lives on, is identified anew and
    // fails closed, as one first seen after its maker exited.
    EventSource sweep_;
    bool sweepFailed_ = false;
    std::map<std::string, std::unique_ptr<Subscriber>> subscribers_;
    // Per account (Caller::account()); nullopt: root's own.
    std::map<std::optional<uid_t>, std::size_t> subscribersOf_;
};

}  // namespace nsfd::daemon
