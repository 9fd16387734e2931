// SPDX-License-Identifier: LGPL-2.1-or-later
#include "manager_object.hpp"

#include <csignal>

#include "endpoint.hpp"
#include "news.hpp"
#include "nsfd/dbus_names.hpp"
#include "nsfd/features.hpp"
#include "version.hpp"

namespace nsfd::daemon {

namespace {

std::string pathOf(std::uint64_t id) {
    return nsfd::dbus::processObjectPath(id);
}

// A process named by pid (`u`), by a pidfd the caller passed (`h`) or as
// users name it (`s`: container:ID, cgroup:PATH, unit:NAME, machine:NAME,
// PID:ID): the variants of a method take the same arguments after it.
enum class Naming { ByPid, ByPidFd, BySelector };

Named readNamed(BusEndpoint& bus, sd_bus_message* call, Naming naming) {
    switch (naming) {
        case Naming::ByPidFd:
            return Named::byPidFd(bus.core().adoptPidFd(readFd(call)));
        case Naming::BySelector:
            return Named::bySelector(readString(call));
        case Naming::ByPid:
            break;
    }
    return Named::byPid(readUint32(call));
}

int trackProcess(sd_bus_message* call, void* userdata, Naming naming) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        Named named = readNamed(bus, call, naming);
        return bus.authorizeThen(call, caller, named, Action::Track,
                                 [&bus, caller](sd_bus_message* m, const ProcessRef& process) {
                                     return replyObjectPath(
                                         m, pathOf(bus.core().track(caller, process.take()).id()));
                                 });
    });
}

int untrackProcess(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        std::string path = readObjectPath(call);
        std::optional<std::uint64_t> id = nsfd::dbus::processIdOfPath(path);
        if (!id) {
            throw ServiceError(ErrorKind::NotTracked, "No tracked process at " + path);
        }
        return bus.authorizeThen(call, caller, Named::byId(*id), Action::Untrack,
                                 [&bus, caller](sd_bus_message* m, const ProcessRef& process) {
                                     bus.core().untrack(caller, *process.trackedId());
                                     return replyEmpty(m);
                                 });
    });
}

int getProcess(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        return bus.authorizeThen(call, caller, Named::byTrackedPid(readUint32(call)),
                                 Action::ReadInfo,
                                 [](sd_bus_message* m, const ProcessRef& process) {
                                     return replyObjectPath(m, pathOf(*process.trackedId()));
                                 });
    });
}

int listProcesses(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        // What the caller may see is decided per process, synchronously (visibleProcesses).
        BusMessage reply = newMethodReturn(call);
        sd_bus_message* m = reply.get();
        const char* what = "Failed to build a reply";
        checkBus(sd_bus_message_open_container(m, 'a', "(uto)"), what);
        for (TrackedProcess* process : bus.core().visibleProcesses(&caller)) {
            checkBus(sd_bus_message_append(m, "(uto)", bus.core().pidFor(caller, process->pid()),
                                           process->id(), pathOf(process->id()).c_str()),
                     what);
        }
        checkBus(sd_bus_message_close_container(m), what);
        return sd_bus_send(nullptr, m, nullptr);
    });
}

int getNamespace(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        Named named = Named::byPid(readUint32(call));
        NsType type = readNsType(call);
        return bus.resolveThen(call, caller, named, Action::GetNamespace,
                               [&bus, caller, type](sd_bus_message* m, Resolution r) {
                                   return authorizeNamespace(bus, m, caller, std::move(r), type);
                               });
    });
}

int getNamespaces(sd_bus_message* call, void* userdata, Naming naming) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        Named named = readNamed(bus, call, naming);
        std::vector<NsType> types = readNsTypes(call);
        return bus.resolveThen(call, caller, named, Action::GetNamespace,
                               [&bus, caller, types](sd_bus_message* m, Resolution r) {
                                   return authorizeNamespaces(bus, m, caller, std::move(r), types);
                               });
    });
}

int getProcessInfo(sd_bus_message* call, void* userdata, Naming naming) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        Named named = readNamed(bus, call, naming);
        return bus.resolveThen(
            call, caller, named, Action::ReadInfo,
            [&bus, caller, naming](sd_bus_message* m, const Resolution& r) {
                auto reply = [&bus, caller, process = r.process](sd_bus_message* m) {
                    return replyInfo(m, bus.core().view(caller, process));
                };
                if (naming == Naming::BySelector) {
                    return reply(m);  // resolving it asked the authorization step for ReadInfo
                }
                return bus.authorizeThen(m, caller, r.request, reply);
            });
    });
}

int sendSignal(sd_bus_message* call, void* userdata, Naming naming) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        Named named = readNamed(bus, call, naming);
        int signal = readSignal(call);
        return bus.resolveThen(call, caller, named, Action::SendSignal,
                               [&bus, caller, signal](sd_bus_message* m, Resolution r) {
                                   return authorizeSignal(bus, m, caller, std::move(r), signal);
                               });
    });
}

int openSocket(sd_bus_message* call, void* userdata, Naming naming) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        Named named = readNamed(bus, call, naming);
        SocketSpec spec = readSocketSpec(call);
        return bus.resolveThen(call, caller, named, Action::OpenSocket,
                               [&bus, caller, spec](sd_bus_message* m, Resolution r) {
                                   return authorizeSocket(bus, m, caller, std::move(r), spec);
                               });
    });
}

// The vtable's entries: one handler per naming of a process.
template <int (*Handler)(sd_bus_message*, void*, Naming), Naming naming>
int named(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return Handler(call, userdata, naming);
}
constexpr sd_bus_message_handler_t getNamespacesByPid = named<getNamespaces, Naming::ByPid>;
constexpr sd_bus_message_handler_t getNamespacesByPidFd = named<getNamespaces, Naming::ByPidFd>;
constexpr sd_bus_message_handler_t getNamespacesBySelector =
    named<getNamespaces, Naming::BySelector>;
constexpr sd_bus_message_handler_t getProcessInfoByPid = named<getProcessInfo, Naming::ByPid>;
constexpr sd_bus_message_handler_t getProcessInfoByPidFd = named<getProcessInfo, Naming::ByPidFd>;
constexpr sd_bus_message_handler_t getProcessInfoBySelector =
    named<getProcessInfo, Naming::BySelector>;
constexpr sd_bus_message_handler_t openSocketByPid = named<openSocket, Naming::ByPid>;
constexpr sd_bus_message_handler_t openSocketByPidFd = named<openSocket, Naming::ByPidFd>;
constexpr sd_bus_message_handler_t sendSignalByPid = named<sendSignal, Naming::ByPid>;
constexpr sd_bus_message_handler_t sendSignalByPidFd = named<sendSignal, Naming::ByPidFd>;
constexpr sd_bus_message_handler_t sendSignalBySelector = named<sendSignal, Naming::BySelector>;
constexpr sd_bus_message_handler_t trackProcessByPid = named<trackProcess, Naming::ByPid>;
constexpr sd_bus_message_handler_t trackProcessByPidFd = named<trackProcess, Naming::ByPidFd>;
constexpr sd_bus_message_handler_t trackProcessBySelector = named<trackProcess, Naming::BySelector>;

int subscribe(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        // Anyone may subscribe: the news says only what each subscriber may see.
        // Bounded per uid (LimitExceeded); the reply waits for the bus's match.
        return endpointOf(userdata).callers().subscribe(call);
    });
}

int unsubscribe(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        endpointOf(userdata).callers().unsubscribe(call);
        return replyEmpty(call);
    });
}

int getVersion(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/,
               const char* /*property*/, sd_bus_message* reply, void* /*userdata*/,
               sd_bus_error* /*error*/) {
    return sd_bus_message_append(reply, "s", kVersion);
}

int getTrackedProcesses(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/,
                        const char* /*property*/, sd_bus_message* reply, void* userdata,
                        sd_bus_error* /*error*/) {
    auto count = static_cast<std::uint32_t>(endpointOf(userdata).core().trackedCount());
    return sd_bus_message_append(reply, "u", count);
}

int getKernelFeatures(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/,
                      const char* /*property*/, sd_bus_message* reply, void* /*userdata*/,
                      sd_bus_error* error) {
    return handleCall(error, [&] {
        checkBus(sd_bus_message_open_container(reply, 'a', "s"), "Failed to build a reply");
        for (std::string_view name : kernelFeatures().names()) {
            std::string value(name);
            checkBus(sd_bus_message_append_basic(reply, 's', value.c_str()),
                     "Failed to build a reply");
        }
        return sd_bus_message_close_container(reply);
    });
}

// Must match dbus/org.nsfd1.Manager.xml (ContractTest compares the two).
constexpr std::uint64_t kMethod = SD_BUS_VTABLE_UNPRIVILEGED;  // nsfdd authorizes each call itself
const sd_bus_vtable kManagerVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD_WITH_ARGS("TrackProcess", SD_BUS_ARGS("u", pid), SD_BUS_RESULT("o", process),
                            trackProcessByPid, kMethod),
    SD_BUS_METHOD_WITH_ARGS("TrackProcessByPidFd", SD_BUS_ARGS("h", pidfd),
                            SD_BUS_RESULT("o", process), trackProcessByPidFd, kMethod),
    SD_BUS_METHOD_WITH_ARGS("UntrackProcess", SD_BUS_ARGS("o", process), SD_BUS_NO_RESULT,
                            untrackProcess, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetProcess", SD_BUS_ARGS("u", pid), SD_BUS_RESULT("o", process),
                            getProcess, kMethod),
    SD_BUS_METHOD_WITH_ARGS("ListProcesses", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(uto)", processes),
                            listProcesses, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetNamespace", SD_BUS_ARGS("u", pid, "s", type),
                            SD_BUS_RESULT("h", fd), getNamespace, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetNamespaces", SD_BUS_ARGS("u", pid, "as", types),
                            SD_BUS_RESULT("a{sh}", fds), getNamespacesByPid, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetProcessInfo", SD_BUS_ARGS("u", pid), SD_BUS_RESULT("a{sv}", info),
                            getProcessInfoByPid, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetNamespacesByPidFd", SD_BUS_ARGS("h", pidfd, "as", types),
                            SD_BUS_RESULT("a{sh}", fds), getNamespacesByPidFd, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetProcessInfoByPidFd", SD_BUS_ARGS("h", pidfd),
                            SD_BUS_RESULT("a{sv}", info), getProcessInfoByPidFd, kMethod),
    SD_BUS_METHOD_WITH_ARGS("SendSignalByPidFd", SD_BUS_ARGS("h", pidfd, "i", signal),
                            SD_BUS_NO_RESULT, sendSignalByPidFd, kMethod),
    SD_BUS_METHOD_WITH_ARGS("SendSignal", SD_BUS_ARGS("u", pid, "i", signal), SD_BUS_NO_RESULT,
                            sendSignalByPid, kMethod),
    SD_BUS_METHOD_WITH_ARGS("TrackProcessBySelector", SD_BUS_ARGS("s", selector),
                            SD_BUS_RESULT("o", process), trackProcessBySelector, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetNamespacesBySelector", SD_BUS_ARGS("s", selector, "as", types),
                            SD_BUS_RESULT("a{sh}", fds), getNamespacesBySelector, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetProcessInfoBySelector", SD_BUS_ARGS("s", selector),
                            SD_BUS_RESULT("a{sv}", info), getProcessInfoBySelector, kMethod),
    SD_BUS_METHOD_WITH_ARGS("SendSignalBySelector", SD_BUS_ARGS("s", selector, "i", signal),
                            SD_BUS_NO_RESULT, sendSignalBySelector, kMethod),
    SD_BUS_METHOD_WITH_ARGS("OpenSocket",
                            SD_BUS_ARGS("u", pid, "i", family, "i", type, "i", protocol),
                            SD_BUS_RESULT("h", socket), openSocketByPid, kMethod),
    SD_BUS_METHOD_WITH_ARGS("OpenSocketByPidFd",
                            SD_BUS_ARGS("h", pidfd, "i", family, "i", type, "i", protocol),
                            SD_BUS_RESULT("h", socket), openSocketByPidFd, kMethod),
    SD_BUS_METHOD_WITH_ARGS("Subscribe", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, subscribe, kMethod),
    SD_BUS_METHOD_WITH_ARGS("Unsubscribe", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, unsubscribe, kMethod),
    SD_BUS_SIGNAL_WITH_ARGS("ProcessTracked", SD_BUS_ARGS("o", process, "u", pid, "t", id), 0),
    SD_BUS_SIGNAL_WITH_ARGS("ProcessUntracked", SD_BUS_ARGS("o", process, "t", id), 0),
    SD_BUS_SIGNAL_WITH_ARGS("ProcessExited",
                            SD_BUS_ARGS("o", process, "u", pid, "t", id, "i", wait_status), 0),
    SD_BUS_PROPERTY("Version", "s", getVersion, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("TrackedProcesses", "u", getTrackedProcesses, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("KernelFeatures", "as", getKernelFeatures, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_VTABLE_END,
};

}  // namespace

ManagerObject::ManagerObject(BusEndpoint& endpoint) {
    sd_bus_slot* slot = nullptr;
    checkBus(sd_bus_add_object_vtable(endpoint.bus(), &slot, nsfd::dbus::kManagerPath,
                                      nsfd::dbus::kManagerInterface, kManagerVtable, &endpoint),
             "Failed to register the manager object");
    vtable_.reset(slot);
    checkBus(sd_bus_add_object_manager(endpoint.bus(), &slot, nsfd::dbus::kManagerPath),
             "Failed to register the object manager");
    objectManager_.reset(slot);
}

}  // namespace nsfd::daemon
