// SPDX-License-Identifier: LGPL-2.1-or-later
#include "process_object.hpp"

#include "bus_convert.hpp"
#include "errors.hpp"
#include "service.hpp"

namespace nsfd::daemon {

ProcessObject::ProcessObject(sdbus::IConnection& connection, Service& service,
                             TrackedProcess& process, bool announce)
    : AdaptorInterfaces(connection, process.objectPath()), service_(service), process_(process) {
    registerAdaptor();
    if (announce) {
        emitInterfacesAddedSignal({Process_adaptor::INTERFACE_NAME});
    }
}

ProcessObject::~ProcessObject() {
    try {
        emitInterfacesRemovedSignal({Process_adaptor::INTERFACE_NAME});
    } catch (const sdbus::Error&) {
        // The bus is gone; nobody is left to tell.
    }
    unregisterAdaptor();
}

void ProcessObject::stateChanged() {
    emitPropertiesChangedSignal(Process_adaptor::INTERFACE_NAME, {"State", "ExitStatus"});
    if (process_.state() == ProcessState::Reaped) {
        emitExited(process_.exitStatus().value_or(-1));
    }
}

template <typename Body>
auto ProcessObject::asVisibleCaller(Body&& body) {
    return translateErrors([&] {
        const Caller& caller = service_.callerOf(getObject());
        if (!service_.isVisible(caller, process_)) {
            // Answer as sd-bus answers for an object that is not there.
            throw sdbus::Error("org.freedesktop.DBus.Error.UnknownObject",
                               "Unknown object '" + process_.objectPath() + "'.");
        }
        return body(caller);
    });
}

sdbus::UnixFd ProcessObject::GetNamespace(const std::string& type) {
    return asVisibleCaller([&](const Caller& caller) {
        return toUnixFd(service_.namespaceFd(caller, process_.pidfd(), type).release());
    });
}

std::map<std::string, sdbus::UnixFd> ProcessObject::GetNamespaces(
    const std::vector<std::string>& types) {
    return asVisibleCaller([&](const Caller& caller) {
        return fdDict(service_.namespaceFds(caller, process_.pidfd(), types));
    });
}

std::map<std::string, uint64_t> ProcessObject::GetNamespaceIds() {
    return asVisibleCaller([&](const Caller& caller) {
        std::map<std::string, uint64_t> ids = service_.namespaceIds(caller, process_.pidfd());
        return ids;
    });
}

std::map<std::string, sdbus::Variant> ProcessObject::GetInfo() {
    return asVisibleCaller([&](const Caller& /*caller*/) {
        return infoDict(process_.info(), process_.id(), toString(process_.state()),
                        process_.exitStatus());
    });
}

sdbus::UnixFd ProcessObject::GetPidFd() {
    return asVisibleCaller([&](const Caller& caller) {
        return toUnixFd(service_.pidFdFor(caller, process_.pidfd()));
    });
}

void ProcessObject::SendSignal(const int32_t& signal) {
    asVisibleCaller(
        [&](const Caller& caller) { service_.sendSignal(caller, process_.pidfd(), signal); });
}

sdbus::UnixFd ProcessObject::GetFd(const int32_t& fd) {
    return asVisibleCaller([&](const Caller& caller) {
        return toUnixFd(service_.getFd(caller, process_.pidfd(), fd));
    });
}

void ProcessObject::Untrack() {
    // Destroys this object: nothing may touch members afterwards.
    asVisibleCaller([&](const Caller& caller) { service_.untrack(caller, process_); });
}

uint32_t ProcessObject::Pid() {
    return static_cast<uint32_t>(process_.pid());
}

uint64_t ProcessObject::Id() {
    return process_.id();
}

uint32_t ProcessObject::ParentPid() {
    return static_cast<uint32_t>(process_.info().parentPid().value_or(0));
}

uint64_t ProcessObject::CgroupId() {
    return process_.info().cgroupId().value_or(0);
}

sdbus::Struct<uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t>
ProcessObject::Credentials() {
    nsfd::Credentials c = process_.info().credentials().value_or(process_.lastCredentials());
    return {c.ruid, c.euid, c.suid, c.fsuid, c.rgid, c.egid, c.sgid, c.fsgid};
}

std::string ProcessObject::State() {
    return std::string(toString(process_.state()));
}

int32_t ProcessObject::ExitStatus() {
    return process_.exitStatus().value_or(-1);
}

}  // namespace nsfd::daemon
