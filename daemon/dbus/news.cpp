// SPDX-License-Identifier: LGPL-2.1-or-later
#include "news.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

#include "endpoint.hpp"
#include "nsfd/dbus_names.hpp"

namespace nsfd::daemon {

BusNews::BusNews(BusEndpoint& endpoint) : endpoint_(endpoint) {
    sd_event_source* source = nullptr;
    checkBus(sd_event_add_defer(sd_bus_get_event(endpoint.bus()), &source, onTurn, this),
             "Failed to add the news hook");
    announce_.reset(source);
    sd_event_source_set_enabled(source, SD_EVENT_OFF);
    // Before the bus's next message: a client that tracked hears of it in order.
    sd_event_source_set_priority(source, SD_EVENT_PRIORITY_IMPORTANT);
}

template <typename Build>
void BusNews::tell(const TrackedProcess& process, const char* path, const char* interface,
                   const char* member, Build&& build) {
    Manager& core = endpoint_.core();
    endpoint_.callers().forEachSubscriber([&](const CallerCache::Subscriber& peer) {
        if (!core.isVisible(peer.caller, process)) {
            return;
        }
        sd_bus_message* raw = nullptr;
        int r = sd_bus_message_new_signal(endpoint_.bus(), &raw, path, interface, member);
        BusMessage signal(raw);
        if (r >= 0) {
            r = sd_bus_message_set_destination(raw, peer.name.c_str());
        }
        if (r >= 0) {
            r = build(raw, peer.caller);
        }
        if (r >= 0) {
            r = sd_bus_send(endpoint_.bus(), raw, nullptr);
        }
        spdlog::trace("Sent {} of {} to {}: {}", member, path, peer.name, r);
        if (r < 0) {
            spdlog::warn("Failed to send {} of {} to {}: {}", member, path, peer.name,
                         std::strerror(-r));
        }
    });
}

void BusNews::processTracked(const TrackedProcess& process) {
    // The caller's reply first; the news for everyone right after it.
    tracked_.push_back(process.id());
    sd_event_source_set_enabled(announce_.get(), SD_EVENT_ONESHOT);
}

int BusNews::onTurn(sd_event_source* /*source*/, void* userdata) {
    auto* self = static_cast<BusNews*>(userdata);
    std::vector<std::uint64_t> ids;
    ids.swap(self->tracked_);
    for (std::uint64_t id : ids) {
        const TrackedProcess* process = self->endpoint_.core().find(id);
        if (process == nullptr) {
            continue;  // gone in the same turn
        }
        std::string path = nsfd::dbus::processObjectPath(id);
        int r = sd_bus_emit_interfaces_added(self->endpoint_.bus(), path.c_str(),
                                             nsfd::dbus::kProcessInterface, nullptr);
        if (r < 0) {
            spdlog::warn("Failed to announce {}: {}", path, std::strerror(-r));
        }
        Manager& core = self->endpoint_.core();
        self->tell(*process, nsfd::dbus::kManagerPath, nsfd::dbus::kManagerInterface,
                   "ProcessTracked", [&](sd_bus_message* m, const Caller& caller) {
                       return sd_bus_message_append(m, "out", path.c_str(),
                                                    core.pidFor(caller, process->pid()), id);
                   });
    }
    return 0;
}

void BusNews::processStateChanged(const TrackedProcess& process) {
    std::string path = nsfd::dbus::processObjectPath(process.id());
    std::string state(toString(process.state()));
    auto status = static_cast<std::int32_t>(process.exitStatus().value_or(kNoExitStatus));
    Manager& core = endpoint_.core();
    if (process.state() == ProcessState::Reaped) {
        // The news most clients wait for goes out first.
        tell(process, nsfd::dbus::kManagerPath, nsfd::dbus::kManagerInterface, "ProcessExited",
             [&](sd_bus_message* m, const Caller& caller) {
                 return sd_bus_message_append(m, "outi", path.c_str(),
                                              core.pidFor(caller, process.pid()), process.id(),
                                              status);
             });
    }
    tell(process, path.c_str(), "org.freedesktop.DBus.Properties", "PropertiesChanged",
         [&](sd_bus_message* m, const Caller& /*caller*/) {
             return sd_bus_message_append(m, "sa{sv}as", nsfd::dbus::kProcessInterface, 2, "State",
                                          "s", state.c_str(), "ExitStatus", "i", status, 0);
         });
    if (process.state() == ProcessState::Reaped) {
        tell(process, path.c_str(), nsfd::dbus::kProcessInterface, "Exited",
             [&](sd_bus_message* m, const Caller& /*caller*/) {
                 return sd_bus_message_append(m, "i", status);
             });
    }
}

void BusNews::processRemoved(const TrackedProcess& process) {
    std::string path = nsfd::dbus::processObjectPath(process.id());
    tell(process, nsfd::dbus::kManagerPath, nsfd::dbus::kManagerInterface, "ProcessUntracked",
         [&](sd_bus_message* m, const Caller& /*caller*/) {
             return sd_bus_message_append(m, "ot", path.c_str(), process.id());
         });
    int r = sd_bus_emit_interfaces_removed(endpoint_.bus(), path.c_str(),
                                           nsfd::dbus::kProcessInterface, nullptr);
    if (r < 0) {
        spdlog::warn("Failed to announce the removal of {}: {}", path, std::strerror(-r));
    }
}

void BusNews::trackedCountChanged(std::size_t /*count*/) {
    int r =
        sd_bus_emit_properties_changed(endpoint_.bus(), nsfd::dbus::kManagerPath,
                                       nsfd::dbus::kManagerInterface, "TrackedProcesses", nullptr);
    if (r < 0) {
        spdlog::warn("Failed to signal the tracked count: {}", std::strerror(-r));
    }
}

}  // namespace nsfd::daemon
