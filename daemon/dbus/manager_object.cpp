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

int trackPidFd(BusEndpoint& bus, sd_bus_message* call, const Caller& caller, PidFd pidfd) {
    Request request{Action::Track, bus.core().targetOf(caller, pidfd, Action::Track), {}, 0};
    auto held = std::make_shared<PidFd>(std::move(pidfd));
    return bus.authorizeThen(call, caller, request, [&bus, caller, held](sd_bus_message* m) {
        return replyObjectPath(m, pathOf(bus.core().track(caller, std::move(*held)).id()));
    });
}

int trackProcess(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        PidFd pidfd = bus.core().openPid(caller, readUint32(call));
        return trackPidFd(bus, call, caller, std::move(pidfd));
    });
}

int trackProcessByPidFd(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        PidFd pidfd = bus.core().adoptPidFd(readFd(call));
        return trackPidFd(bus, call, caller, std::move(pidfd));
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
        TrackedProcess& process = bus.core().tracked(caller, *id);
        Request request{
            Action::Untrack, bus.core().targetOf(caller, process, Action::Untrack), {}, 0};
        return bus.authorizeThen(call, caller, request, [&bus, caller, id](sd_bus_message* m) {
            bus.core().untrack(caller, *id);
            return replyEmpty(m);
        });
    });
}

int getProcess(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        TrackedProcess& process = bus.core().trackedWithPid(caller, readUint32(call));
        Request request{
            Action::ReadInfo, bus.core().targetOf(caller, process, Action::ReadInfo), {}, 0};
        return bus.authorizeThen(call, caller, request, [id = process.id()](sd_bus_message* m) {
            return replyObjectPath(m, pathOf(id));
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
        auto pidfd = std::make_shared<PidFd>(bus.core().openPid(caller, readUint32(call)));
        NsType type = readNsType(call);
        Request request{Action::GetNamespace,
                        bus.core().targetOf(caller, *pidfd, Action::GetNamespace),
                        {type},
                        0};
        return bus.authorizeThen(call, caller, request, [&bus, pidfd, type](sd_bus_message* m) {
            return replyFd(m, UniqueFd(bus.core().namespaceFd(*pidfd, type).release()));
        });
    });
}

// A process named by pid (`u`) or by a pidfd the caller passed (`h`).
enum class Named { ByPid, ByPidFd };

PidFd readProcess(BusEndpoint& bus, sd_bus_message* call, const Caller& caller, Named named) {
    return named == Named::ByPidFd ? bus.core().adoptPidFd(readFd(call))
                                   : bus.core().openPid(caller, readUint32(call));
}

int getNamespaces(sd_bus_message* call, void* userdata, Named named) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        PidFd pidfd = readProcess(bus, call, caller, named);
        std::vector<NsType> types = readNsTypes(call);
        Target target = bus.core().targetOf(caller, pidfd, Action::GetNamespace);
        return authorizeNamespaces(bus, call, caller, std::move(target),
                                   heldPidFd(std::move(pidfd)), types);
    });
}

int getProcessInfo(sd_bus_message* call, void* userdata, Named named) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        auto pidfd = std::make_shared<PidFd>(readProcess(bus, call, caller, named));
        Request request{
            Action::ReadInfo, bus.core().targetOf(caller, *pidfd, Action::ReadInfo), {}, 0};
        return bus.authorizeThen(call, caller, request, [&bus, caller, pidfd](sd_bus_message* m) {
            Info info = bus.core().info(*pidfd);
            ProcessState state = pidfd->hasExited() ? ProcessState::Exited : ProcessState::Running;
            return replyInfo(m, {info,
                                 pidfd->id(),
                                 state,
                                 {},
                                 bus.core().pidFor(caller, pidfd->pid()),
                                 bus.core().pidFor(caller, info.parentPid().value_or(0))});
        });
    });
}

int sendSignal(sd_bus_message* call, void* userdata, Named named) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        PidFd pidfd = readProcess(bus, call, caller, named);
        int signal = readSignal(call);
        Target target = bus.core().targetOf(caller, pidfd, Action::SendSignal);
        return authorizeSignal(bus, call, caller, std::move(target), heldPidFd(std::move(pidfd)),
                               signal);
    });
}

int openSocket(sd_bus_message* call, void* userdata, Named named) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        PidFd pidfd = readProcess(bus, call, caller, named);
        SocketSpec spec = readSocketSpec(call);
        Target target = bus.core().targetOf(caller, pidfd, Action::OpenSocket);
        return authorizeSocket(bus, call, caller, std::move(target), heldPidFd(std::move(pidfd)),
                               spec);
    });
}

int openSocketByPid(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return openSocket(call, userdata, Named::ByPid);
}
int openSocketByPidFd(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return openSocket(call, userdata, Named::ByPidFd);
}

int getNamespacesByPid(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return getNamespaces(call, userdata, Named::ByPid);
}
int getNamespacesByPidFd(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return getNamespaces(call, userdata, Named::ByPidFd);
}
int getProcessInfoByPid(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return getProcessInfo(call, userdata, Named::ByPid);
}
int getProcessInfoByPidFd(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return getProcessInfo(call, userdata, Named::ByPidFd);
}
int sendSignalByPid(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return sendSignal(call, userdata, Named::ByPid);
}
int sendSignalByPidFd(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return sendSignal(call, userdata, Named::ByPidFd);
}

// -- a process named as users name it (container:ID, cgroup:PATH, unit:NAME,
// machine:NAME, PID:ID), resolved by the core, then as by pidfd --

int trackProcessBySelector(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        return bus.resolveThen(call, caller, readString(call),
                               [&bus, caller](sd_bus_message* m, PidFd pidfd) {
                                   return trackPidFd(bus, m, caller, std::move(pidfd));
                               });
    });
}

int getNamespacesBySelector(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        std::string selector = readString(call);
        std::vector<NsType> types = readNsTypes(call);
        return bus.resolveThen(
            call, caller, selector, [&bus, caller, types](sd_bus_message* m, PidFd pidfd) {
                Target target = bus.core().targetOf(caller, pidfd, Action::GetNamespace);
                return authorizeNamespaces(bus, m, caller, std::move(target),
                                           heldPidFd(std::move(pidfd)), types);
            });
    });
}

int getProcessInfoBySelector(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        // Resolving asked the authorization step for ReadInfo already.
        return bus.resolveThen(
            call, caller, readString(call), [&bus, caller](sd_bus_message* m, PidFd pidfd) {
                Info info = bus.core().info(pidfd);
                ProcessState state =
                    pidfd.hasExited() ? ProcessState::Exited : ProcessState::Running;
                return replyInfo(m, {info,
                                     pidfd.id(),
                                     state,
                                     {},
                                     bus.core().pidFor(caller, pidfd.pid()),
                                     bus.core().pidFor(caller, info.parentPid().value_or(0))});
            });
    });
}

int sendSignalBySelector(sd_bus_message* call, void* userdata, sd_bus_error* /*error*/) {
    return serveCall(call, [&] {
        BusEndpoint& bus = endpointOf(userdata);
        Caller caller = bus.callerOf(call);
        std::string selector = readString(call);
        int signal = readSignal(call);
        return bus.resolveThen(
            call, caller, selector, [&bus, caller, signal](sd_bus_message* m, PidFd pidfd) {
                Target target = bus.core().targetOf(caller, pidfd, Action::SendSignal);
                return authorizeSignal(bus, m, caller, std::move(target),
                                       heldPidFd(std::move(pidfd)), signal);
            });
    });
}

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
                            trackProcess, kMethod),
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
