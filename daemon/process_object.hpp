// SPDX-License-Identifier: LGPL-2.1-or-later
// /org/nsfd1/process/ID: org.nsfd1.Process of one tracked process.
#pragma once

#include <sdbus-c++/sdbus-c++.h>

#include "nsfd/generated/process_adaptor.h"

namespace nsfd::daemon {

class Service;
class TrackedProcess;

class ProcessObject final
    : public sdbus::AdaptorInterfaces<org::nsfd1::Process_adaptor, sdbus::ManagedObject_adaptor,
                                      sdbus::Properties_adaptor> {
  public:
    // Registers the object and announces it (InterfacesAdded).
    // `announce`: emit InterfacesAdded. Not for an object restored after a
    // restart: to clients it never went away (same path, same process).
    ProcessObject(sdbus::IConnection& connection, Service& service, TrackedProcess& process,
                  bool announce);
    // Announces its removal (InterfacesRemoved) and unregisters.
    ~ProcessObject();

    // PropertiesChanged for State and ExitStatus, and Exited once reaped.
    void stateChanged();

  private:
    sdbus::UnixFd GetNamespace(const std::string& type) override;
    std::map<std::string, sdbus::UnixFd> GetNamespaces(
        const std::vector<std::string>& types) override;
    std::map<std::string, uint64_t> GetNamespaceIds() override;
    std::map<std::string, sdbus::Variant> GetInfo() override;
    sdbus::UnixFd GetPidFd() override;
    void SendSignal(const int32_t& signal) override;
    sdbus::UnixFd GetFd(const int32_t& fd) override;
    void Untrack() override;
    uint32_t Pid() override;
    uint64_t Id() override;
    uint32_t ParentPid() override;
    uint64_t CgroupId() override;
    sdbus::Struct<uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t>
    Credentials() override;
    std::string State() override;
    int32_t ExitStatus() override;

    // The caller of the method being handled, after checking that it may see this process.
    template <typename Body>
    auto asVisibleCaller(Body&& body);

    Service& service_;
    TrackedProcess& process_;
};

}  // namespace nsfd::daemon
