// SPDX-License-Identifier: LGPL-2.1-or-later
#include "process_objects.hpp"

#include <cstdlib>
#include <cstring>

#include "endpoint.hpp"
#include "nsfd/dbus_names.hpp"

namespace nsfd::daemon {

namespace {

// A method call on the process object the vtable's find callback found: the
// body gets the endpoint, the caller and the process, named by its id.
template <typename Body>
int onProcess(sd_bus_message* call, void* userdata, Body&& body) noexcept {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        return body(bus, caller, BusEndpoint::processOf(call));
    });
}

int getNamespace(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return onProcess(call, userdata,
                     [&](BusEndpoint& bus, const Caller& caller, const Named& named) {
                         NsType type = readNsType(call);
                         return bus.resolveThen(
                             call, caller, named, Action::GetNamespace,
                             [&bus, caller, type](sd_bus_message* m, Resolution r) {
                                 return authorizeNamespace(bus, m, caller, std::move(r), type);
                             });
                     });
}

int getNamespaces(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return onProcess(call, userdata,
                     [&](BusEndpoint& bus, const Caller& caller, const Named& named) {
                         std::vector<NsType> types = readNsTypes(call);
                         return bus.resolveThen(
                             call, caller, named, Action::GetNamespace,
                             [&bus, caller, types](sd_bus_message* m, Resolution r) {
                                 return authorizeNamespaces(bus, m, caller, std::move(r), types);
                             });
                     });
}

int getNamespaceIds(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return onProcess(
        call, userdata, [&](BusEndpoint& bus, const Caller& caller, const Named& named) {
            return bus.authorizeThen(
                call, caller, named, Action::ReadInfo,
                [&bus](sd_bus_message* m, const ProcessRef& process) {
                    BusMessage reply = newMethodReturn(m);
                    const char* what = "Failed to build a reply";
                    checkBus(sd_bus_message_open_container(reply.get(), 'a', "{st}"), what);
                    for (const auto& [type, id] : bus.core().namespaceIds(process.pidfd())) {
                        checkBus(sd_bus_message_append(reply.get(), "{st}", type.c_str(), id),
                                 what);
                    }
                    checkBus(sd_bus_message_close_container(reply.get()), what);
                    return sd_bus_send(nullptr, reply.get(), nullptr);
                });
        });
}

int getInfo(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return onProcess(
        call, userdata, [&](BusEndpoint& bus, const Caller& caller, const Named& named) {
            return bus.authorizeThen(call, caller, named, Action::ReadInfo,
                                     [&bus, caller](sd_bus_message* m, const ProcessRef& process) {
                                         return replyInfo(m, bus.core().view(caller, process));
                                     });
        });
}

int getPidFd(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return onProcess(call, userdata,
                     [&](BusEndpoint& bus, const Caller& caller, const Named& named) {
                         return bus.authorizeThen(
                             call, caller, named, Action::GetPidFd,
                             [&bus](sd_bus_message* m, const ProcessRef& process) {
                                 return replyFd(m, bus.core().duplicatePidFd(process.pidfd()));
                             });
                     });
}

int sendSignal(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return onProcess(
        call, userdata, [&](BusEndpoint& bus, const Caller& caller, const Named& named) {
            int signal = readSignal(call);
            return bus.resolveThen(call, caller, named, Action::SendSignal,
                                   [&bus, caller, signal](sd_bus_message* m, Resolution r) {
                                       return authorizeSignal(bus, m, caller, std::move(r), signal);
                                   });
        });
}

int openSocket(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return onProcess(
        call, userdata, [&](BusEndpoint& bus, const Caller& caller, const Named& named) {
            SocketSpec spec = readSocketSpec(call);
            return bus.resolveThen(call, caller, named, Action::OpenSocket,
                                   [&bus, caller, spec](sd_bus_message* m, Resolution r) {
                                       return authorizeSocket(bus, m, caller, std::move(r), spec);
                                   });
        });
}

int getFd(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return onProcess(call, userdata,
                     [&](BusEndpoint& bus, const Caller& caller, const Named& named) {
                         int targetFd = readInt32(call);
                         if (targetFd < 0) {
                             throw ServiceError(ErrorKind::InvalidArgs,
                                                "Invalid fd number " + std::to_string(targetFd));
                         }
                         return bus.authorizeThen(
                             call, caller, named, Action::GetFd,
                             [&bus, targetFd](sd_bus_message* m, const ProcessRef& process) {
                                 return replyFd(m, bus.core().getFd(process.pidfd(), targetFd));
                             });
                     });
}

int untrack(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return onProcess(
        call, userdata, [&](BusEndpoint& bus, const Caller& caller, const Named& named) {
            return bus.authorizeThen(call, caller, named, Action::Untrack,
                                     [&bus, caller](sd_bus_message* m, const ProcessRef& process) {
                                         bus.core().untrack(caller, *process.trackedId());
                                         return replyEmpty(m);
                                     });
        });
}

// The caller of the message being handled; none while nsfdd emits its own
// signals (InterfacesAdded: sent to root only, by the bus policy).
std::optional<Caller> currentCaller(BusEndpoint& endpoint, sd_bus* bus) {
    sd_bus_message* call = sd_bus_get_current_message(bus);
    if (call == nullptr || sd_bus_message_get_sender(call) == nullptr) {
        return std::nullopt;
    }
    return endpoint.callerOf(call);
}

// Pids as the caller of the message being handled sees them; as nsfdd sees
// them without a caller.
struct PidView {
    const Manager& core;
    const Caller* caller;
    std::uint32_t operator()(pid_t pid) const noexcept {
        return caller != nullptr ? core.pidFor(*caller, pid) : static_cast<std::uint32_t>(pid);
    }
};

// The getter of a property of the process at `path` (the find callback found
// it visible to the caller); `Append` appends its value.
template <int (*Append)(sd_bus_message*, TrackedProcess&, const PidView&)>
int processProperty(sd_bus* bus, const char* path, const char* /*interface*/,
                    const char* /*property*/, sd_bus_message* reply, void* userdata,
                    sd_bus_error* error) {
    return handleCall(error, [&] {
        BusEndpoint& endpoint = endpointOf(userdata);
        std::optional<std::uint64_t> id = nsfd::dbus::processIdOfPath(path);
        TrackedProcess* process = id ? endpoint.core().find(*id) : nullptr;
        if (process == nullptr) {
            throw ServiceError(ErrorKind::NotTracked, std::string("No tracked process at ") + path);
        }
        std::optional<Caller> caller = currentCaller(endpoint, bus);
        return Append(reply, *process, PidView{endpoint.core(), caller ? &*caller : nullptr});
    });
}

int appendPid(sd_bus_message* m, TrackedProcess& process, const PidView& pids) {
    return sd_bus_message_append(m, "u", pids(process.pid()));
}

int appendId(sd_bus_message* m, TrackedProcess& process, const PidView& /*pids*/) {
    return sd_bus_message_append(m, "t", process.id());
}

int appendParentPid(sd_bus_message* m, TrackedProcess& process, const PidView& pids) {
    return sd_bus_message_append(m, "u", pids(process.info().parentPid().value_or(0)));
}

int appendCgroupId(sd_bus_message* m, TrackedProcess& process, const PidView& /*pids*/) {
    return sd_bus_message_append(m, "t",
                                 static_cast<std::uint64_t>(process.info().cgroupId().value_or(0)));
}

int appendCredentials(sd_bus_message* m, TrackedProcess& process, const PidView& /*pids*/) {
    Credentials c = process.info().credentials().value_or(process.lastCredentials());
    return sd_bus_message_append(m, "(uuuuuuuu)", c.ruid, c.euid, c.suid, c.fsuid, c.rgid, c.egid,
                                 c.sgid, c.fsgid);
}

int appendState(sd_bus_message* m, TrackedProcess& process, const PidView& /*pids*/) {
    std::string state(toString(process.state()));
    return sd_bus_message_append(m, "s", state.c_str());
}

int appendExitStatus(sd_bus_message* m, TrackedProcess& process, const PidView& /*pids*/) {
    return sd_bus_message_append(
        m, "i", static_cast<std::int32_t>(process.exitStatus().value_or(kNoExitStatus)));
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
    SD_BUS_METHOD_WITH_ARGS("OpenSocket", SD_BUS_ARGS("i", family, "i", type, "i", protocol),
                            SD_BUS_RESULT("h", socket), openSocket, kMethod),
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

ProcessObjects::ProcessObjects(BusEndpoint& endpoint) : endpoint_(endpoint) {
    std::string prefix = processPathPrefix();
    sd_bus_slot* slot = nullptr;
    checkBus(
        sd_bus_add_fallback_vtable(endpoint.bus(), &slot, prefix.c_str(),
                                   nsfd::dbus::kProcessInterface, kProcessVtable, find, &endpoint),
        "Failed to register the process objects");
    vtable_.reset(slot);
    checkBus(
        sd_bus_add_node_enumerator(endpoint.bus(), &slot, prefix.c_str(), enumerate, &endpoint),
        "Failed to register the process object enumerator");
    enumerator_.reset(slot);
}

int ProcessObjects::find(sd_bus* bus, const char* path, const char* /*interface*/, void* userdata,
                         void** found, sd_bus_error* error) {
    return handleCall(error, [&] {
        BusEndpoint& endpoint = endpointOf(userdata);
        std::optional<std::uint64_t> id = nsfd::dbus::processIdOfPath(path);
        TrackedProcess* process = id ? endpoint.core().find(*id) : nullptr;
        std::optional<Caller> caller = currentCaller(endpoint, bus);
        bool visible =
            process != nullptr && (!caller || endpoint.core().isVisible(*caller, *process));
        *found = visible ? userdata : nullptr;
        return visible ? 1 : 0;
    });
}

int ProcessObjects::enumerate(sd_bus* bus, const char* /*prefix*/, void* userdata, char*** nodes,
                              sd_bus_error* error) {
    return handleCall(error, [&] {
        BusEndpoint& endpoint = endpointOf(userdata);
        std::optional<Caller> caller = currentCaller(endpoint, bus);
        std::vector<TrackedProcess*> processes =
            endpoint.core().visibleProcesses(caller ? &*caller : nullptr);
        // sd-bus frees the list with free(): build it with malloc().
        auto* list = static_cast<char**>(std::calloc(processes.size() + 1, sizeof(char*)));
        if (list == nullptr) {
            throw std::bad_alloc();
        }
        for (std::size_t i = 0; i < processes.size(); ++i) {
            list[i] = ::strdup(nsfd::dbus::processObjectPath(processes[i]->id()).c_str());
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

}  // namespace nsfd::daemon
