// SPDX-License-Identifier: LGPL-2.1-or-later
#include "callers.hpp"

#include <sdbus-c++/sdbus-c++.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <map>
#include <sstream>

#include "errors.hpp"
#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

namespace {

constexpr const char* kBusInterface = "org.freedesktop.DBus";

// What the bus does not say (dbus-daemon 1.14 gives no groups): the caller's
// fsgid, which ptrace's rule compares, and its supplementary groups, from its
// process. Trusted only if that process still runs as `uid` and has not exited
// by the end, so that the pid cannot have named another process meanwhile.
void completeFromProcess(Caller& caller, bool wantGroups) {
    try {
        PidFd pidfd = PidFd::open(caller.pid);
        std::optional<Credentials> creds = pidfd.info(InfoFlags::Credentials).credentials();
        if (!creds || creds->euid != caller.uid) {
            return;
        }
        std::vector<gid_t> groups;
        if (wantGroups) {
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
        if (!pidfd.hasExited()) {
            caller.gid = creds->fsgid;
            if (wantGroups) {
                caller.groups = std::move(groups);
            }
        }
    } catch (const std::system_error&) {
        // Gone already: the caller keeps no gid and no groups, which grants nothing.
    }
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
    auto groups = creds.find("UnixGroupIDs");
    if (groups != creds.end()) {
        for (uint32_t gid : groups->second.get<std::vector<uint32_t>>()) {
            caller.groups.push_back(gid);
        }
    }
    if (!caller.isRoot()) {
        completeFromProcess(caller, groups == creds.end());
    }
    return caller;
}

}  // namespace nsfd::daemon
