// SPDX-License-Identifier: LGPL-2.1-or-later
#include "process_objects.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>

#include "nsfd/dbus_names.hpp"
#include "service.hpp"

namespace nsfd::daemon {

namespace {

// A method call on the process object the vtable's find callback resolved.
template <typename Body>
int onProcess(sd_bus_message* call, void* userdata, sd_bus_error* error, Body&& body) noexcept {
    return handleCall(error, [&] {
        ProcessBinding& binding = *static_cast<ProcessBinding*>(userdata);
        Service& service = binding.service();
        return body(service, service.callerOf(call), binding.process());
    });
}

int getNamespace(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onProcess(call, userdata, error,
                     [&](Service& service, const Caller& caller, TrackedProcess& process) {
                         std::string type = readString(call);
                         return replyFd(
                             call, service.namespaceFd(caller, process.pidfd(), type).release());
                     });
}

int getNamespaces(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onProcess(call, userdata, error,
                     [&](Service& service, const Caller& caller, TrackedProcess& process) {
                         std::vector<std::string> types = readStrings(call);
                         return replyNamespaceFds(
                             call, service.namespaceFds(caller, process.pidfd(), types));
                     });
}

int getNamespaceIds(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onProcess(
        call, userdata, error,
        [&](Service& service, const Caller& caller, TrackedProcess& process) {
            BusMessage reply = newMethodReturn(call);
            sd_bus_message* m = reply.get();
            checkBus(sd_bus_message_open_container(m, 'a', "{st}"), "Failed to build a reply");
            for (const auto& [type, id] : service.namespaceIds(caller, process.pidfd())) {
                checkBus(sd_bus_message_append(m, "{st}", type.c_str(), id),
                         "Failed to build a reply");
            }
            checkBus(sd_bus_message_close_container(m), "Failed to build a reply");
            return sd_bus_send(nullptr, m, nullptr);
        });
}

int getInfo(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onProcess(call, userdata, error,
                     [&](Service& /*service*/, const Caller& /*caller*/, TrackedProcess& process) {
                         return replyInfo(call, process.info(), process.id(),
                                          toString(process.state()), process.exitStatus());
                     });
}

int getPidFd(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onProcess(call, userdata, error,
                     [&](Service& service, const Caller& caller, TrackedProcess& process) {
                         return replyFd(call, service.pidFdFor(caller, process.pidfd()));
                     });
}

int sendSignal(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onProcess(call, userdata, error,
                     [&](Service& service, const Caller& caller, TrackedProcess& process) {
                         service.sendSignal(caller, process.pidfd(), readInt32(call));
                         return replyEmpty(call);
                     });
}

int getFd(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onProcess(call, userdata, error,
                     [&](Service& service, const Caller& caller, TrackedProcess& process) {
                         return replyFd(call,
                                        service.getFd(caller, process.pidfd(), readInt32(call)));
                     });
}

int untrack(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onProcess(call, userdata, error,
                     [&](Service& service, const Caller& caller, TrackedProcess& process) {
                         service.untrack(caller, process);
                         return replyEmpty(call);
                     });
}

// The getter of a property of the process the vtable's find callback resolved;
// `Append` appends its value.
template <int (*Append)(sd_bus_message*, TrackedProcess&)>
int processProperty(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/,
                    const char* /*property*/, sd_bus_message* reply, void* userdata,
                    sd_bus_error* error) {
    return handleCall(
        error, [&] { return Append(reply, static_cast<ProcessBinding*>(userdata)->process()); });
}

int appendPid(sd_bus_message* m, TrackedProcess& process) {
    return sd_bus_message_append(m, "u", static_cast<std::uint32_t>(process.pid()));
}

int appendId(sd_bus_message* m, TrackedProcess& process) {
    return sd_bus_message_append(m, "t", process.id());
}

int appendParentPid(sd_bus_message* m, TrackedProcess& process) {
    return sd_bus_message_append(
        m, "u", static_cast<std::uint32_t>(process.info().parentPid().value_or(0)));
}

int appendCgroupId(sd_bus_message* m, TrackedProcess& process) {
    return sd_bus_message_append(m, "t",
                                 static_cast<std::uint64_t>(process.info().cgroupId().value_or(0)));
}

int appendCredentials(sd_bus_message* m, TrackedProcess& process) {
    Credentials c = process.info().credentials().value_or(process.lastCredentials());
    return sd_bus_message_append(m, "(uuuuuuuu)", c.ruid, c.euid, c.suid, c.fsuid, c.rgid, c.egid,
                                 c.sgid, c.fsgid);
}

int appendState(sd_bus_message* m, TrackedProcess& process) {
    std::string state(toString(process.state()));
    return sd_bus_message_append(m, "s", state.c_str());
}

int appendExitStatus(sd_bus_message* m, TrackedProcess& process) {
    return sd_bus_message_append(m, "i",
                                 static_cast<std::int32_t>(process.exitStatus().value_or(-1)));
}

// Must match dbus/org.nsfd1.Process.xml (ContractTest compares the two).
constexpr std::uint64_t kMethod = SD_BUS_VTABLE_UNPRIVILEGED;  // nsfdd authorizes each call itself
const sd_bus_vtable kProcessVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD_WITH_ARGS("GetNamespace", SD_BUS_ARGS("s", type), SD_BUS_RESULT("h", fd),
                            getNamespace, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetNamespaces", SD_BUS_ARGS("as", types), SD_BUS_RESULT("a{sh}", fds),
                            getNamespaces, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetNamespaceIds", SD_BUS_NO_ARGS, SD_BUS_RESULT("a{st}", ids),
                            getNamespaceIds, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetInfo", SD_BUS_NO_ARGS, SD_BUS_RESULT("a{sv}", info), getInfo,
                            kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetPidFd", SD_BUS_NO_ARGS, SD_BUS_RESULT("h", pidfd), getPidFd,
                            kMethod),
    SD_BUS_METHOD_WITH_ARGS("SendSignal", SD_BUS_ARGS("i", signal), SD_BUS_NO_RESULT, sendSignal,
                            kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetFd", SD_BUS_ARGS("i", fd), SD_BUS_RESULT("h", duplicate), getFd,
                            kMethod),
    SD_BUS_METHOD_WITH_ARGS("Untrack", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, untrack, kMethod),
    SD_BUS_SIGNAL_WITH_ARGS("Exited", SD_BUS_ARGS("i", wait_status), 0),
    SD_BUS_PROPERTY("Pid", "u", processProperty<appendPid>, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Id", "t", processProperty<appendId>, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("ParentPid", "u", processProperty<appendParentPid>, 0, 0),
    SD_BUS_PROPERTY("CgroupId", "t", processProperty<appendCgroupId>, 0, 0),
    SD_BUS_PROPERTY("Credentials", "(uuuuuuuu)", processProperty<appendCredentials>, 0, 0),
    SD_BUS_PROPERTY("State", "s", processProperty<appendState>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("ExitStatus", "i", processProperty<appendExitStatus>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_VTABLE_END,
};

// The parent of every process object: "/org/nsfd1/process".
std::string processPathPrefix() {
    std::string prefix = nsfd::dbus::kProcessPathPrefix;
    prefix.pop_back();
    return prefix;
}

}  // namespace

ProcessObjects::ProcessObjects(sd_bus* bus, Service& service) : bus_(bus), service_(service) {
    std::string prefix = processPathPrefix();
    sd_bus_slot* slot = nullptr;
    checkBus(sd_bus_add_fallback_vtable(bus, &slot, prefix.c_str(), nsfd::dbus::kProcessInterface,
                                        kProcessVtable, find, this),
             "Failed to register the process objects");
    vtable_.reset(slot);
    checkBus(sd_bus_add_node_enumerator(bus, &slot, prefix.c_str(), enumerate, this),
             "Failed to register the process object enumerator");
    enumerator_.reset(slot);
}

int ProcessObjects::find(sd_bus* bus, const char* path, const char* /*interface*/, void* userdata,
                         void** found, sd_bus_error* error) {
    return handleCall(error, [&] {
        auto* self = static_cast<ProcessObjects*>(userdata);
        // Within a call, as its caller sees it; else (nsfdd's own signals) as it is.
        sd_bus_message* call = sd_bus_get_current_message(bus);
        const Caller* caller = call != nullptr ? &self->service_.callerOf(call) : nullptr;
        ProcessBinding* binding = self->service_.bindingAt(path, caller);
        *found = binding;
        return binding != nullptr ? 1 : 0;
    });
}

int ProcessObjects::enumerate(sd_bus* bus, const char* /*prefix*/, void* userdata, char*** nodes,
                              sd_bus_error* error) {
    return handleCall(error, [&] {
        auto* self = static_cast<ProcessObjects*>(userdata);
        sd_bus_message* call = sd_bus_get_current_message(bus);
        const Caller* caller = call != nullptr ? &self->service_.callerOf(call) : nullptr;
        std::vector<TrackedProcess*> processes = self->service_.visibleProcesses(caller);
        // sd-bus frees the list with free(): build it with malloc().
        auto* list = static_cast<char**>(std::calloc(processes.size() + 1, sizeof(char*)));
        if (list == nullptr) {
            throw std::bad_alloc();
        }
        for (std::size_t i = 0; i < processes.size(); ++i) {
            list[i] = ::strdup(processes[i]->objectPath().c_str());
            if (list[i] == nullptr) {
                for (std::size_t j = 0; j < i; ++j) {
                    std::free(list[j]);
                }
                std::free(list);
                throw std::bad_alloc();
            }
        }
        *nodes = list;
        return 0;
    });
}

void ProcessObjects::announceAdded(const TrackedProcess& process) {
    std::string path = process.objectPath();
    int r =
        sd_bus_emit_interfaces_added(bus_, path.c_str(), nsfd::dbus::kProcessInterface, nullptr);
    if (r < 0) {
        spdlog::warn("Failed to announce {}: {}", path, std::strerror(-r));
    }
}

void ProcessObjects::announceRemoved(const TrackedProcess& process) {
    std::string path = process.objectPath();
    int r =
        sd_bus_emit_interfaces_removed(bus_, path.c_str(), nsfd::dbus::kProcessInterface, nullptr);
    if (r < 0) {
        spdlog::warn("Failed to announce the removal of {}: {}", path, std::strerror(-r));
    }
}

void ProcessObjects::stateChanged(const TrackedProcess& process) {
    std::string path = process.objectPath();
    int r = sd_bus_emit_properties_changed(bus_, path.c_str(), nsfd::dbus::kProcessInterface,
                                           "State", "ExitStatus", nullptr);
    if (r >= 0 && process.state() == ProcessState::Reaped) {
        r = sd_bus_emit_signal(bus_, path.c_str(), nsfd::dbus::kProcessInterface, "Exited", "i",
                               static_cast<std::int32_t>(process.exitStatus().value_or(-1)));
    }
    if (r < 0) {
        spdlog::warn("Failed to signal the new state of {}: {}", path, std::strerror(-r));
    }
}

}  // namespace nsfd::daemon
