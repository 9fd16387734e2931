// SPDX-License-Identifier: LGPL-2.1-or-later
// Who is calling: sd-bus's word on each sender (sd_bus_query_sender_creds),
// asked once per connection and forgotten when that connection leaves the bus
// (sd_bus_track; unique names are never reused). Each peer also carries its
// subscription to nsfdd's news (Manager.Subscribe).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "bus.hpp"
#include "core/caller.hpp"

namespace nsfd::daemon {

class CallerCache final {
  public:
    struct Peer {
        CallerCache* cache = nullptr;
        std::string name;
        Caller caller;
        bool subscribed = false;
        BusTrack track;      // tells when it leaves
        BusSlot ownerCheck;  // GetNameOwner: whether it left before the track was in place
    };

    explicit CallerCache(sd_bus* bus);
    CallerCache(const CallerCache&) = delete;
    CallerCache& operator=(const CallerCache&) = delete;

    // The sender of `call`, with the call's own flags (interactive
    // authorization). Throws ServiceError(AccessDenied) if sd-bus cannot say who it is.
    Caller callerOf(sd_bus_message* call);
    // The cached peer behind `call`'s sender (looked up as callerOf does).
    Peer& peerOf(sd_bus_message* call);
    // Subscribes or unsubscribes the peer (Manager.Subscribe, Unsubscribe).
    void setSubscribed(Peer& peer, bool subscribed);
    // Keeps the subscribers' names in `file` (the fd store's "subscribers"),
    // and first takes back those a previous nsfdd kept there that are still
    // on the bus: their subscriptions survive a restart of nsfdd.
    void keepSubscribersIn(int file);
    // Every peer that subscribed, for the news.
    template <typename Fn>
    void forEachSubscriber(Fn&& fn) const {
        for (const auto& [name, peer] : peers_) {
            if (peer->subscribed) {
                fn(*peer);
            }
        }
    }
    std::size_t size() const noexcept { return peers_.size(); }

  private:
    Peer& add(const std::string& name, Caller caller);
    Caller callerFrom(sd_bus_creds* creds, int r, const std::string& name);
    void saveSubscribers();
    static int onPeerGone(sd_bus_track* track, void* userdata);
    static int onOwnerChecked(sd_bus_message* reply, void* userdata, sd_bus_error* error);
    void forget(const std::string& name);
    int subscribersFile_ = -1;  // owned by the fd store
    sd_bus* bus_;
    OwnNamespaces own_;  // nsfdd's pid and user namespaces
    std::map<std::string, std::unique_ptr<Peer>> peers_;
};

}  // namespace nsfd::daemon
