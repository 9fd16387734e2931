// SPDX-License-Identifier: LGPL-2.1-or-later
#include "manager_object.hpp"

#include "bus_convert.hpp"
#include "errors.hpp"
#include "nsfd/dbus_names.hpp"
#include "nsfd/features.hpp"
#include "service.hpp"
#include "version.hpp"

namespace nsfd::daemon {

ManagerObject::ManagerObject(sdbus::IConnection& connection, Service& service)
    : AdaptorInterfaces(connection, nsfd::dbus::kManagerPath), service_(service) {
    registerAdaptor();
}

ManagerObject::~ManagerObject() {
    unregisterAdaptor();
}

void ManagerObject::trackedCountChanged() {
    emitPropertiesChangedSignal(Manager_adaptor::INTERFACE_NAME, {"TrackedProcesses"});
}

sdbus::ObjectPath ManagerObject::TrackProcess(const uint32_t& pid) {
    return translateErrors([&] {
        const Caller& caller = service_.callerOf(getObject());
        return sdbus::ObjectPath(service_.track(caller, service_.openPid(pid)).objectPath());
    });
}

sdbus::ObjectPath ManagerObject::TrackProcessByPidFd(const sdbus::UnixFd& pidfd) {
    return translateErrors([&] {
        const Caller& caller = service_.callerOf(getObject());
        return sdbus::ObjectPath(
            service_.track(caller, service_.adoptPidFd(fromUnixFd(pidfd))).objectPath());
    });
}

void ManagerObject::UntrackProcess(const sdbus::ObjectPath& process) {
    translateErrors([&] {
        const Caller& caller = service_.callerOf(getObject());
        service_.untrack(caller, service_.processAt(caller, process));
    });
}

sdbus::ObjectPath ManagerObject::GetProcess(const uint32_t& pid) {
    return translateErrors([&] {
        const Caller& caller = service_.callerOf(getObject());
        return sdbus::ObjectPath(service_.processWithPid(caller, pid).objectPath());
    });
}

std::vector<sdbus::Struct<uint32_t, uint64_t, sdbus::ObjectPath>> ManagerObject::ListProcesses() {
    return translateErrors([&] {
        const Caller& caller = service_.callerOf(getObject());
        std::vector<sdbus::Struct<uint32_t, uint64_t, sdbus::ObjectPath>> out;
        for (TrackedProcess* process : service_.visibleProcesses(caller)) {
            out.emplace_back(static_cast<uint32_t>(process->pid()), process->id(),
                             sdbus::ObjectPath(process->objectPath()));
        }
        return out;
    });
}

sdbus::UnixFd ManagerObject::GetNamespace(const uint32_t& pid, const std::string& type) {
    return translateErrors([&] {
        const Caller& caller = service_.callerOf(getObject());
        return toUnixFd(service_.namespaceFd(caller, service_.openPid(pid), type).release());
    });
}

std::map<std::string, sdbus::UnixFd> ManagerObject::GetNamespaces(
    const uint32_t& pid, const std::vector<std::string>& types) {
    return translateErrors([&] {
        const Caller& caller = service_.callerOf(getObject());
        return fdDict(service_.namespaceFds(caller, service_.openPid(pid), types));
    });
}

std::map<std::string, sdbus::Variant> ManagerObject::GetProcessInfo(const uint32_t& pid) {
    return translateErrors([&] {
        const Caller& caller = service_.callerOf(getObject());
        PidFd pidfd = service_.openPid(pid);
        Info info = service_.info(caller, pidfd);
        ProcessState state = pidfd.hasExited() ? ProcessState::Exited : ProcessState::Running;
        return infoDict(info, pidfd.id(), toString(state), std::nullopt);
    });
}

std::string ManagerObject::Version() {
    return kVersion;
}

uint32_t ManagerObject::TrackedProcesses() {
    return static_cast<uint32_t>(service_.trackedCount());
}

std::vector<std::string> ManagerObject::KernelFeatures() {
    std::vector<std::string> out;
    for (std::string_view name : kernelFeatures().names()) {
        out.emplace_back(name);
    }
    return out;
}

}  // namespace nsfd::daemon
