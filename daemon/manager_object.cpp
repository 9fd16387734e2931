// SPDX-License-Identifier: LGPL-2.1-or-later
#include "manager_object.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

#include "nsfd/dbus_names.hpp"
#include "nsfd/features.hpp"
#include "service.hpp"
#include "version.hpp"

namespace nsfd::daemon {

namespace {

// A method call on the manager, by its caller.
template <typename Body>
int onManager(sd_bus_message* call, void* userdata, sd_bus_error* error, Body&& body) noexcept {
    return handleCall(error, [&] {
        Service& service = *static_cast<Service*>(userdata);
        return body(service, service.callerOf(call));
    });
}

int trackProcess(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onManager(call, userdata, error, [&](Service& service, const Caller& caller) {
        PidFd pidfd = service.openPid(readUint32(call));
        return replyObjectPath(call, service.track(caller, std::move(pidfd)).objectPath());
    });
}

int trackProcessByPidFd(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onManager(call, userdata, error, [&](Service& service, const Caller& caller) {
        PidFd pidfd = service.adoptPidFd(readFd(call));
        return replyObjectPath(call, service.track(caller, std::move(pidfd)).objectPath());
    });
}

int untrackProcess(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onManager(call, userdata, error, [&](Service& service, const Caller& caller) {
        service.untrack(caller, service.processAt(caller, readObjectPath(call)));
        return replyEmpty(call);
    });
}

int getProcess(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onManager(call, userdata, error, [&](Service& service, const Caller& caller) {
        return replyObjectPath(call, service.processWithPid(caller, readUint32(call)).objectPath());
    });
}

int listProcesses(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onManager(call, userdata, error, [&](Service& service, const Caller& caller) {
        BusMessage reply = newMethodReturn(call);
        sd_bus_message* m = reply.get();
        const char* what = "Failed to build a reply";
        checkBus(sd_bus_message_open_container(m, 'a', "(uto)"), what);
        for (TrackedProcess* process : service.visibleProcesses(&caller)) {
            checkBus(sd_bus_message_append(m, "(uto)", static_cast<std::uint32_t>(process->pid()),
                                           process->id(), process->objectPath().c_str()),
                     what);
        }
        checkBus(sd_bus_message_close_container(m), what);
        return sd_bus_send(nullptr, m, nullptr);
    });
}

int getNamespace(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onManager(call, userdata, error, [&](Service& service, const Caller& caller) {
        PidFd pidfd = service.openPid(readUint32(call));
        std::string type = readString(call);
        return replyFd(call, service.namespaceFd(caller, pidfd, type).release());
    });
}

int getNamespaces(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onManager(call, userdata, error, [&](Service& service, const Caller& caller) {
        PidFd pidfd = service.openPid(readUint32(call));
        std::vector<std::string> types = readStrings(call);
        return replyNamespaceFds(call, service.namespaceFds(caller, pidfd, types));
    });
}

int getProcessInfo(sd_bus_message* call, void* userdata, sd_bus_error* error) {
    return onManager(call, userdata, error, [&](Service& service, const Caller& caller) {
        PidFd pidfd = service.openPid(readUint32(call));
        Info info = service.info(caller, pidfd);
        ProcessState state = pidfd.hasExited() ? ProcessState::Exited : ProcessState::Running;
        return replyInfo(call, info, pidfd.id(), toString(state), std::nullopt);
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
    auto count = static_cast<std::uint32_t>(static_cast<Service*>(userdata)->trackedCount());
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
                            SD_BUS_RESULT("a{sh}", fds), getNamespaces, kMethod),
    SD_BUS_METHOD_WITH_ARGS("GetProcessInfo", SD_BUS_ARGS("u", pid), SD_BUS_RESULT("a{sv}", info),
                            getProcessInfo, kMethod),
    SD_BUS_SIGNAL_WITH_ARGS("ProcessExited",
                            SD_BUS_ARGS("o", process, "u", pid, "t", id, "i", wait_status), 0),
    SD_BUS_PROPERTY("Version", "s", getVersion, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("TrackedProcesses", "u", getTrackedProcesses, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("KernelFeatures", "as", getKernelFeatures, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_VTABLE_END,
};

}  // namespace

ManagerObject::ManagerObject(sd_bus* bus, Service& service) : bus_(bus) {
    sd_bus_slot* slot = nullptr;
    checkBus(sd_bus_add_object_vtable(bus, &slot, nsfd::dbus::kManagerPath,
                                      nsfd::dbus::kManagerInterface, kManagerVtable, &service),
             "Failed to register the manager object");
    vtable_.reset(slot);
    checkBus(sd_bus_add_object_manager(bus, &slot, nsfd::dbus::kManagerPath),
             "Failed to register the object manager");
    objectManager_.reset(slot);
}

void ManagerObject::trackedCountChanged() {
    int r = sd_bus_emit_properties_changed(
        bus_, nsfd::dbus::kManagerPath, nsfd::dbus::kManagerInterface, "TrackedProcesses", nullptr);
    if (r < 0) {
        spdlog::warn("Failed to signal the tracked count: {}", std::strerror(-r));
    }
}

void ManagerObject::processExited(const TrackedProcess& process) {
    std::string path = process.objectPath();
    int r = sd_bus_emit_signal(bus_, nsfd::dbus::kManagerPath, nsfd::dbus::kManagerInterface,
                               "ProcessExited", "outi", path.c_str(),
                               static_cast<std::uint32_t>(process.pid()), process.id(),
                               static_cast<std::int32_t>(process.exitStatus().value_or(-1)));
    if (r < 0) {
        spdlog::warn("Failed to signal the exit of {}: {}", path, std::strerror(-r));
    }
}

}  // namespace nsfd::daemon
