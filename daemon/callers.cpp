// SPDX-License-Identifier: LGPL-2.1-or-later
#include "callers.hpp"

#include <sdbus-c++/sdbus-c++.h>
#include <spdlog/spdlog.h>

#include <map>

#include "errors.hpp"
#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

namespace {

constexpr const char* kBusInterface = "org.freedesktop.DBus";

// The caller's fsgid, which ptrace's rule compares, from its process; -1 if the
// process is gone or no longer runs as `uid`.
gid_t fsgidOf(pid_t pid, uid_t uid) {
    try {
        std::optional<Credentials> creds = PidFd::open(pid).info(InfoFlags::Credentials).credentials();
        if (creds && creds->euid == uid) {
            return creds->fsgid;
        }
    } catch (const std::system_error&) {
    }
    return static_cast<gid_t>(-1);
}

}  // namespace

CallerCache::CallerCache(sdbus::IConnection& connection)
    : bus_(sdbus::createProxy(connection, "org.freedesktop.DBus", "/org/freedesktop/DBus")) {
    bus_->uponSignal("NameOwnerChanged")
        .onInterface(kBusInterface)
        .call([this](const std::string& name, const std::string& /*oldOwner*/,
                     const std::string& newOwner) {
            if (newOwner.empty()) {
                callers_.erase(name);
            }
        });
    bus_->finishRegistration();
}

CallerCache::~CallerCache() = default;

const Caller& CallerCache::lookup(const std::string& sender) {
    auto it = callers_.find(sender);
    if (it == callers_.end()) {
        it = callers_.emplace(sender, query(sender)).first;
    }
    return it->second;
}

Caller CallerCache::query(const std::string& sender) {
    std::map<std::string, sdbus::Variant> creds;
    try {
        bus_->callMethod("GetConnectionCredentials")
            .onInterface(kBusInterface)
            .withArguments(sender)
            .storeResultsTo(creds);
    } catch (const sdbus::Error& e) {
        throw ServiceError(ErrorKind::AccessDenied,
                           "Failed to identify caller " + sender + ": " + e.getMessage());
    }
    Caller caller;
    auto uid = creds.find("UnixUserID");
    auto pid = creds.find("ProcessID");
    if (uid == creds.end() || pid == creds.end()) {
        throw ServiceError(ErrorKind::AccessDenied,
                           "Failed to identify caller " + sender + ": the bus gave no uid or pid");
    }
    caller.uid = uid->second.get<uint32_t>();
    caller.pid = static_cast<pid_t>(pid->second.get<uint32_t>());
    if (auto groups = creds.find("UnixGroupIDs"); groups != creds.end()) {
        for (uint32_t gid : groups->second.get<std::vector<uint32_t>>()) {
            caller.groups.push_back(gid);
        }
    }
    caller.gid = fsgidOf(caller.pid, caller.uid);
    return caller;
}

}  // namespace nsfd::daemon
