// SPDX-License-Identifier: LGPL-2.1-or-later
#include "callers.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>

#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

namespace {

// How often cached callers whose process has exited are dropped (onSweep).
constexpr std::uint64_t kSweepUsec = 1000 * 1000;

// What nsfdd asks sd-bus of a caller: what the bus vouches for, nothing from /proc.
constexpr std::uint64_t kCredsMask =
    SD_BUS_CREDS_EUID | SD_BUS_CREDS_PID | SD_BUS_CREDS_SUPPLEMENTARY_GIDS;

// Whether every uid slot of `creds` is `uid` and its four gid slots are one
// gid. The bus vouches for a connection's uid only (dbus-daemon 1.14 gives no
// gid): a process that has exec'd a setuid or setgid program since it
// connected (its real and effective ids differ) must not lend the program's
// group to whoever keeps the connection.
bool hasOneIdentity(const Credentials& creds, uid_t uid) noexcept {
    return creds.ruid == uid && creds.euid == uid && creds.suid == uid && creds.fsuid == uid &&
           creds.egid == creds.rgid && creds.sgid == creds.rgid && creds.fsgid == creds.rgid;
}

// What the bus does not say (dbus-daemon 1.14 gives no groups, and sd-bus 252
// asks for no pidfd): the caller's process, by the pid the bus gave, held from
// here on; its fsgid, which ptrace's rule compares, its supplementary groups,
// and its pid and user namespaces. Trusted only if that process runs as `uid`
// with one identity (hasOneIdentity()) and is alive once all is read
// (identifyProcess()), so that the pid cannot have named another process
// meanwhile. Fails closed: a process that is gone or cannot be checked leaves
// a caller from a foreign pid namespace (no raw pids), in a sandbox (no root,
// no grants but `sandboxed` ones), with no start time (polkit not asked),
// whatever the process that took over its connection may be.
void completeFromProcess(Caller& caller, bool wantGroups, const OwnNamespaces& own) {
    std::shared_ptr<const PidFd> pidfd;
    std::optional<Credentials> creds;
    std::vector<gid_t> groups;
    try {
        auto opened = std::make_shared<const PidFd>(PidFd::open(caller.pid));
        creds = opened->info(InfoFlags::Credentials).credentials();
        if (creds && hasOneIdentity(*creds, caller.uid)) {
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
        caller.gid = creds->fsgid;  // all four gid slots are this one
        if (wantGroups) {
            caller.groups = std::move(groups);
        }
    }
}

// Whose share a subscriber uses: its user's (Caller::account()), or root's
// own (nullopt), apart from those of the user namespaces root owns.
std::optional<uid_t> accountOf(const Caller& caller) {
    if (caller.isRoot()) {
        return std::nullopt;
    }
    return caller.account();
}

}  // namespace

CallerCache::CallerCache(sd_bus* bus, Limits limits)
    : bus_(bus), own_(OwnNamespaces::ofSelf()), limits_(limits) {}

void CallerCache::armSweep() {
    // The first time a caller is cached: the bus is attached to the loop by then.
    sd_event* event = sd_bus_get_event(bus_);
    sd_event_source* source = nullptr;
    int r = event == nullptr ? -ENXIO
                             : sd_event_add_time_relative(event, &source, CLOCK_MONOTONIC,
                                                          kSweepUsec, 0, &onSweep, this);
    if (r < 0) {
        spdlog::warn("Failed to arm the sweep of exited callers, their pidfds stay cached: {}",
                     std::strerror(-r));
        sweepFailed_ = true;
        return;
    }
    sweep_.reset(source);
}

int CallerCache::onSweep(sd_event_source* source, std::uint64_t usec, void* userdata) {
    auto* self = static_cast<CallerCache*>(userdata);
    for (auto it = self->ages_.begin(); it != self->ages_.end();) {
        auto cached = self->cached_.find(*it);
        if (cached != self->cached_.end() && cached->second.caller.pidfd &&
            cached->second.caller.pidfd->hasExited()) {
            self->cached_.erase(cached);
            it = self->ages_.erase(it);
        } else {
            ++it;
        }
    }
    sd_event_source_set_time(source, usec + kSweepUsec);
    sd_event_source_set_enabled(source, SD_EVENT_ON);
    return 0;
}

Caller CallerCache::callerOf(sd_bus_message* call) {
    Caller caller = lookUp(call);
    caller.allowInteractive = sd_bus_message_get_allow_interactive_authorization(call) > 0;
    return caller;
}

const Caller& CallerCache::lookUp(sd_bus_message* call) {
    const char* sender = sd_bus_message_get_sender(call);
    if (sender == nullptr) {
        throw ServiceError(ErrorKind::AccessDenied, "No caller to authorize");
    }
    auto it = cached_.find(sender);
    if (it == cached_.end()) {
        sd_bus_creds* raw = nullptr;
        int r = sd_bus_query_sender_creds(call, kCredsMask, &raw);
        BusCreds creds(raw);
        remember(sender, callerFrom(creds.get(), r, sender));
        it = cached_.find(sender);
    } else {
        ages_.splice(ages_.end(), ages_, it->second.age);
    }
    return it->second.caller;
}

void CallerCache::remember(const std::string& name, const Caller& caller) {
    if (cached_.size() >= limits_.cached && !ages_.empty()) {
        cached_.erase(ages_.front());  // asked again if it calls again
        ages_.pop_front();
    }
    ages_.push_back(name);
    cached_.insert_or_assign(name, Cached{caller, std::prev(ages_.end())});
    if (!sweep_ && !sweepFailed_) {
        armSweep();
    }
}

int CallerCache::subscribe(sd_bus_message* call) {
    Caller caller = lookUp(call);
    auto it = subscribers_.find(caller.busName);
    if (it != subscribers_.end()) {
        return replyEmpty(call);  // subscribed, or about to be
    }
    addSubscriber(caller.busName, caller).pendingSubscribe.reset(sd_bus_message_ref(call));
    return 1;
}

void CallerCache::unsubscribe(sd_bus_message* call) {
    const char* sender = sd_bus_message_get_sender(call);
    if (sender != nullptr) {
        forget(sender);
    }
}

CallerCache::Subscriber& CallerCache::addSubscriber(const std::string& name, const Caller& caller) {
    auto countOf = [&](std::optional<uid_t> account) -> std::size_t {
        auto it = subscribersOf_.find(account);
        return it == subscribersOf_.end() ? 0 : it->second;
    };
    std::size_t ofUid = countOf(accountOf(caller));
    std::size_t others = subscribers_.size() - countOf(std::nullopt);
    if (!caller.isRoot() && ofUid >= limits_.subscribersPerUser) {
        throw ServiceError(ErrorKind::LimitExceeded, caller.describeAccount() + " has " +
                                                         std::to_string(ofUid) +
                                                         " subscribers, its share of nsfdd's news");
    }
    if (!caller.isRoot() && others >= limits_.subscribers) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "nsfdd has " + std::to_string(others) +
                               " subscribers, all it takes (root still may subscribe)");
    }
    if (caller.isRoot() && ofUid >= limits_.rootSubscribers) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "root has " + std::to_string(ofUid) + " subscribers, all it may have");
    }
    auto subscriber = std::make_unique<Subscriber>();
    subscriber->cache = this;
    subscriber->name = name;
    subscriber->caller = caller;
    std::string match =
        "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
        "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" +
        name + "'";
    sd_bus_slot* slot = nullptr;
    // With an install callback, a match the bus refuses is ours to handle;
    // without one sd-bus would close nsfdd's connection.
    checkBus(sd_bus_add_match_async(bus_, &slot, match.c_str(), onNameOwnerChanged,
                                    onMatchInstalled, subscriber.get()),
             "Failed to watch a subscriber's connection");
    subscriber->gone.reset(slot);
    ++subscribersOf_[accountOf(caller)];
    return *subscribers_.emplace(name, std::move(subscriber)).first->second;
}

void CallerCache::saveSubscribers() {
    if (subscribersFile_ < 0) {
        return;
    }
    std::string names;
    forEachSubscriber([&](const Subscriber& subscriber) { names += subscriber.name + "\n"; });
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
        if (name.empty() || name[0] != ':' || subscribers_.count(name) != 0) {
            continue;
        }
        sd_bus_creds* raw = nullptr;
        int r = sd_bus_get_name_creds(bus_, name.c_str(), kCredsMask, &raw);
        BusCreds creds(raw);
        try {
            Caller caller = callerFrom(creds.get(), r, name);
            remember(name, caller);
            addSubscriber(name, caller);
            ++restored;
        } catch (const std::exception& e) {
            spdlog::debug("Subscriber {} is not taken back: {}", name, e.what());
        }
    }
    if (restored > 0) {
        spdlog::info("Restored {} subscribers", restored);
    }
    saveSubscribers();
}

void CallerCache::forget(const std::string& name) {
    auto it = subscribers_.find(name);
    if (it == subscribers_.end()) {
        return;
    }
    bool inPlace = !it->second->pendingSubscribe;
    auto counted = subscribersOf_.find(accountOf(it->second->caller));
    if (counted != subscribersOf_.end() && --counted->second == 0) {
        subscribersOf_.erase(counted);
    }
    // The slots may be the ones sd-bus is calling us from: it holds its own
    // references meanwhile, as for systemd's polkit callbacks.
    subscribers_.erase(it);
    if (inPlace) {
        saveSubscribers();
    }
}

int CallerCache::onNameOwnerChanged(sd_bus_message* message, void* userdata,
                                    sd_bus_error* /*error*/) {
    auto* subscriber = static_cast<Subscriber*>(userdata);
    const char *name = nullptr, *oldOwner = nullptr, *newOwner = nullptr;
    if (sd_bus_message_read(message, "sss", &name, &oldOwner, &newOwner) >= 0 &&
        (newOwner == nullptr || newOwner[0] == '\0')) {
        subscriber->cache->forget(subscriber->name);
    }
    return 0;
}

int CallerCache::onMatchInstalled(sd_bus_message* reply, void* userdata, sd_bus_error* /*error*/) {
    auto* subscriber = static_cast<Subscriber*>(userdata);
    CallerCache* cache = subscriber->cache;
    BusMessage call = std::move(subscriber->pendingSubscribe);
    if (const sd_bus_error* error = sd_bus_message_get_error(reply)) {
        std::string why = std::string("The bus refused to watch subscriber ") + subscriber->name +
                          ": " + (error->name ? error->name : "") + ": " +
                          (error->message ? error->message : "");
        spdlog::warn("{}", why);
        std::string name = subscriber->name;
        cache->forget(name);  // `subscriber` is gone from here on
        if (call) {
            replyError(call.get(), ErrorKind::LimitExceeded, why);
        }
        return 0;
    }
    // The match is in place from here on; had the subscriber left before,
    // no signal would say so. The bus answers this after the match.
    sd_bus_slot* slot = nullptr;
    int r = sd_bus_call_method_async(
        cache->bus_, &slot, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
        "GetNameOwner", onOwnerChecked, subscriber, "s", subscriber->name.c_str());
    if (r < 0) {
        std::string name = subscriber->name;
        cache->forget(name);
        if (call) {
            replyError(
                call.get(), ErrorKind::LimitExceeded,
                std::string("Failed to watch subscriber ") + name + ": " + std::strerror(-r));
        }
        return 0;
    }
    subscriber->ownerCheck.reset(slot);
    cache->saveSubscribers();
    if (call) {
        replyEmpty(call.get());
    }
    return 0;
}

int CallerCache::onOwnerChecked(sd_bus_message* reply, void* userdata, sd_bus_error* /*error*/) {
    auto* subscriber = static_cast<Subscriber*>(userdata);
    subscriber->ownerCheck
        .reset();  // as systemd's polkit callbacks do: the slot may go in its callback
    if (sd_bus_message_is_method_error(reply, nullptr) != 0) {
        subscriber->cache->forget(subscriber->name);  // it left before the match was in place
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
