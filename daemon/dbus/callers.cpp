// SPDX-License-Identifier: LGPL-2.1-or-later
#include "callers.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

namespace {

// What nsfdd asks sd-bus of a caller: what the bus vouches for, nothing from /proc.
constexpr std::uint64_t kCredsMask =
    SD_BUS_CREDS_EUID | SD_BUS_CREDS_PID | SD_BUS_CREDS_SUPPLEMENTARY_GIDS;

// What the bus does not say (dbus-daemon 1.14 gives no groups, and sd-bus 252
// asks for no pidfd): the caller's process, by the pid the bus gave, held from
// here on; its fsgid, which ptrace's rule compares, its supplementary groups,
// and its pid and user namespaces. Trusted only if that process runs as `uid`
// and is alive once all is read (identifyProcess()), so that the pid cannot
// have named another process meanwhile. Fails closed: a process that is gone
// or cannot be checked leaves a caller from a foreign pid namespace (no raw
// pids), in a sandbox (no root, no grants but `sandboxed` ones), with no start
// time (polkit not asked), whatever the process that took over its
// connection may be.
void completeFromProcess(Caller& caller, bool wantGroups, const OwnNamespaces& own) {
    std::shared_ptr<const PidFd> pidfd;
    std::optional<Credentials> creds;
    std::vector<gid_t> groups;
    try {
        auto opened = std::make_shared<const PidFd>(PidFd::open(caller.pid));
        creds = opened->info(InfoFlags::Credentials).credentials();
        if (creds && creds->euid == caller.uid) {
            pidfd = std::move(opened);
        }
    } catch (const std::system_error&) {
        // Gone already.
    }
    if (pidfd && wantGroups) {
        std::ifstream status("/proc/" + std::to_string(caller.pid) + "/status");
        std::string line;
        while (std::getline(status, line)) {
            if (line.rfind("Groups:", 0) == 0) {
                std::istringstream list(line.substr(7));
                for (gid_t gid = 0; list >> gid;) {
                    groups.push_back(gid);
                }
            }
        }
    }
    identifyProcess(caller, std::move(pidfd), own);
    if (caller.pidfd) {
        caller.gid = caller.isRoot() ? 0 : creds->fsgid;
        if (wantGroups) {
            caller.groups = std::move(groups);
        }
    }
}

}  // namespace

CallerCache::CallerCache(sd_bus* bus) : bus_(bus), own_(OwnNamespaces::ofSelf()) {}

Caller CallerCache::callerOf(sd_bus_message* call) {
    Caller caller = peerOf(call).caller;
    caller.allowInteractive = sd_bus_message_get_allow_interactive_authorization(call) > 0;
    return caller;
}

CallerCache::Peer& CallerCache::peerOf(sd_bus_message* call) {
    const char* sender = sd_bus_message_get_sender(call);
    if (sender == nullptr) {
        throw ServiceError(ErrorKind::AccessDenied, "No caller to authorize");
    }
    auto it = peers_.find(sender);
    if (it != peers_.end()) {
        return *it->second;
    }
    sd_bus_creds* raw = nullptr;
    int r = sd_bus_query_sender_creds(call, kCredsMask, &raw);
    BusCreds creds(raw);
    return add(sender, callerFrom(creds.get(), r, sender));
}

CallerCache::Peer& CallerCache::add(const std::string& name, Caller caller) {
    auto peer = std::make_unique<Peer>();
    peer->cache = this;
    peer->name = name;
    peer->caller = std::move(caller);
    sd_bus_track* track = nullptr;
    checkBus(sd_bus_track_new(bus_, &track, onPeerGone, peer.get()),
             "Failed to watch a caller's connection");
    peer->track.reset(track);
    checkBus(sd_bus_track_add_name(track, name.c_str()), "Failed to watch a caller's connection");
    // The track's match goes to the bus after the caller's call came; had the
    // caller left in between, no signal would say so. The bus answers this
    // after the match is in place.
    sd_bus_slot* slot = nullptr;
    checkBus(sd_bus_call_method_async(bus_, &slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                      "org.freedesktop.DBus", "GetNameOwner", onOwnerChecked,
                                      peer.get(), "s", name.c_str()),
             "Failed to watch a caller's connection");
    peer->ownerCheck.reset(slot);
    return *peers_.emplace(name, std::move(peer)).first->second;
}

void CallerCache::setSubscribed(Peer& peer, bool subscribed) {
    if (peer.subscribed != subscribed) {
        peer.subscribed = subscribed;
        saveSubscribers();
    }
}

void CallerCache::saveSubscribers() {
    if (subscribersFile_ < 0) {
        return;
    }
    std::string names;
    forEachSubscriber([&](const Peer& peer) { names += peer.name + "\n"; });
    if (::pwrite(subscribersFile_, names.data(), names.size(), 0) !=
            static_cast<ssize_t>(names.size()) ||
        ::ftruncate(subscribersFile_, static_cast<off_t>(names.size())) < 0) {
        spdlog::warn("Failed to keep the subscribers for a restart, ignoring: {}",
                     std::strerror(errno));
    }
}

void CallerCache::keepSubscribersIn(int file) {
    subscribersFile_ = file;
    if (file < 0) {
        return;
    }
    std::string text;
    char buf[4096];
    for (off_t at = 0;;) {
        ssize_t n = ::pread(file, buf, sizeof(buf), at);
        if (n <= 0) {
            break;
        }
        text.append(buf, static_cast<std::size_t>(n));
        at += n;
    }
    std::istringstream lines(text);
    std::size_t restored = 0;
    for (std::string name; std::getline(lines, name);) {
        if (name.empty() || name[0] != ':' || peers_.count(name) != 0) {
            continue;
        }
        sd_bus_creds* raw = nullptr;
        int r = sd_bus_get_name_creds(bus_, name.c_str(), kCredsMask, &raw);
        BusCreds creds(raw);
        try {
            add(name, callerFrom(creds.get(), r, name)).subscribed = true;
            ++restored;
        } catch (const std::exception& e) {
            spdlog::debug("Subscriber {} is gone: {}", name, e.what());
        }
    }
    if (restored > 0) {
        spdlog::info("Restored {} subscribers", restored);
    }
    saveSubscribers();
}

void CallerCache::forget(const std::string& name) {
    auto it = peers_.find(name);
    if (it != peers_.end()) {
        bool subscribed = it->second->subscribed;
        peers_.erase(it);
        if (subscribed) {
            saveSubscribers();
        }
    }
}

int CallerCache::onPeerGone(sd_bus_track* /*track*/, void* userdata) {
    auto* peer = static_cast<Peer*>(userdata);
    peer->cache->forget(peer->name);  // sd-bus holds its own reference to the track meanwhile
    return 0;
}

int CallerCache::onOwnerChecked(sd_bus_message* reply, void* userdata, sd_bus_error* /*error*/) {
    auto* peer = static_cast<Peer*>(userdata);
    peer->ownerCheck.reset();  // as systemd's polkit callbacks do: the slot may go in its callback
    if (sd_bus_message_is_method_error(reply, nullptr) != 0) {
        peer->cache->forget(peer->name);  // it left before the track was in place
    }
    return 0;
}

Caller CallerCache::callerFrom(sd_bus_creds* creds, int r, const std::string& name) {
    if (r < 0) {
        throw ServiceError(ErrorKind::AccessDenied,
                           "Failed to identify caller " + name + ": " + std::strerror(-r));
    }
    Caller caller;
    uid_t uid = 0;
    pid_t pid = 0;
    if (sd_bus_creds_get_euid(creds, &uid) < 0 || sd_bus_creds_get_pid(creds, &pid) < 0) {
        throw ServiceError(ErrorKind::AccessDenied,
                           "Failed to identify caller " + name + ": the bus gave no uid or pid");
    }
    caller.uid = uid;
    caller.pid = pid;
    caller.busName = name;
    const gid_t* gids = nullptr;
    int n = sd_bus_creds_get_supplementary_gids(creds, &gids);
    if (n >= 0) {
        caller.groups.assign(gids, gids + n);
    }
    completeFromProcess(caller, n < 0 && caller.uid != 0, own_);
    if (!caller.pidfd) {
        spdlog::info(
            "Caller {} (uid {}, pid {}) has left its process or cannot be checked: "
            "taken as from a foreign pid namespace, in a sandbox",
            name, caller.uid, caller.pid);
    }
    return caller;
}

}  // namespace nsfd::daemon
