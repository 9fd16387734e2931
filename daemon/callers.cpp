// SPDX-License-Identifier: LGPL-2.1-or-later
#include "callers.hpp"

#include <spdlog/spdlog.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "errors.hpp"
#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

namespace {

constexpr const char* kBusService = "org.freedesktop.DBus";
constexpr const char* kBusPath = "/org/freedesktop/DBus";

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

CallerCache::CallerCache(sd_bus* bus) : bus_(bus) {
    sd_bus_slot* slot = nullptr;
    checkBus(sd_bus_match_signal(bus, &slot, kBusService, kBusPath, kBusService, "NameOwnerChanged",
                                 onNameOwnerChanged, this),
             "Failed to watch the bus's clients");
    nameOwnerChanged_.reset(slot);
}

int CallerCache::onNameOwnerChanged(sd_bus_message* signal, void* userdata,
                                    sd_bus_error* /*error*/) {
    const char* name = nullptr;
    const char* oldOwner = nullptr;
    const char* newOwner = nullptr;
    if (sd_bus_message_read(signal, "sss", &name, &oldOwner, &newOwner) >= 0 &&
        newOwner[0] == '\0') {
        static_cast<CallerCache*>(userdata)->callers_.erase(name);
    }
    return 0;
}

const Caller& CallerCache::lookup(const std::string& sender) {
    auto it = callers_.find(sender);
    if (it == callers_.end()) {
        it = callers_.emplace(sender, query(sender)).first;
    }
    return it->second;
}

namespace {

// The a{sv} of GetConnectionCredentials, the entries nsfdd uses.
struct BusCredentials {
    std::optional<uint32_t> uid;
    std::optional<uint32_t> pid;
    std::optional<std::vector<gid_t>> groups;
};

BusCredentials readCredentials(sd_bus_message* reply) {
    const char* what = "Failed to read the caller's credentials";
    BusCredentials out;
    checkBus(sd_bus_message_enter_container(reply, 'a', "{sv}"), what);
    while (checkBus(sd_bus_message_enter_container(reply, 'e', "sv"), what) > 0) {
        const char* key = nullptr;
        checkBus(sd_bus_message_read_basic(reply, 's', &key), what);
        std::string_view name = key;
        uint32_t value = 0;
        if (name == "UnixUserID" || name == "ProcessID") {
            checkBus(sd_bus_message_read(reply, "v", "u", &value), what);
            (name == "UnixUserID" ? out.uid : out.pid) = value;
        } else if (name == "UnixGroupIDs") {
            const void* array = nullptr;
            size_t size = 0;
            checkBus(sd_bus_message_enter_container(reply, 'v', "au"), what);
            checkBus(sd_bus_message_read_array(reply, 'u', &array, &size), what);
            const auto* gids = static_cast<const uint32_t*>(array);
            out.groups.emplace(gids, gids + size / sizeof(uint32_t));
            checkBus(sd_bus_message_exit_container(reply), what);
        } else {
            checkBus(sd_bus_message_skip(reply, "v"), what);
        }
        checkBus(sd_bus_message_exit_container(reply), what);
    }
    checkBus(sd_bus_message_exit_container(reply), what);
    return out;
}

}  // namespace

Caller CallerCache::query(const std::string& sender) {
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message* raw = nullptr;
    int r = sd_bus_call_method(bus_, kBusService, kBusPath, kBusService, "GetConnectionCredentials",
                               &error, &raw, "s", sender.c_str());
    BusMessage reply(raw);
    if (r < 0) {
        std::string reason = error.message != nullptr ? error.message : std::strerror(-r);
        sd_bus_error_free(&error);
        throw ServiceError(ErrorKind::AccessDenied,
                           "Failed to identify caller " + sender + ": " + reason);
    }
    BusCredentials creds = readCredentials(reply.get());
    if (!creds.uid || !creds.pid) {
        throw ServiceError(ErrorKind::AccessDenied,
                           "Failed to identify caller " + sender + ": the bus gave no uid or pid");
    }
    Caller caller;
    caller.uid = *creds.uid;
    caller.pid = static_cast<pid_t>(*creds.pid);
    if (creds.groups) {
        caller.groups = std::move(*creds.groups);
    }
    if (!caller.isRoot()) {
        completeFromProcess(caller, !creds.groups);
    }
    return caller;
}

}  // namespace nsfd::daemon
