// SPDX-License-Identifier: LGPL-2.1-or-later
// /org/nsfd1: org.nsfd1.Manager and org.freedesktop.DBus.ObjectManager.
#pragma once

#include <sdbus-c++/sdbus-c++.h>

#include "nsfd/generated/manager_adaptor.h"

namespace nsfd::daemon {

class Service;

class ManagerObject final
    : public sdbus::AdaptorInterfaces<org::nsfd1::Manager_adaptor, sdbus::ObjectManager_adaptor,
                                      sdbus::Properties_adaptor> {
  public:
    ManagerObject(sdbus::IConnection& connection, Service& service);
    ~ManagerObject();

    void trackedCountChanged();

  private:
    sdbus::ObjectPath TrackProcess(const uint32_t& pid) override;
    sdbus::ObjectPath TrackProcessByPidFd(const sdbus::UnixFd& pidfd) override;
    void UntrackProcess(const sdbus::ObjectPath& process) override;
    sdbus::ObjectPath GetProcess(const uint32_t& pid) override;
    std::vector<sdbus::Struct<uint32_t, uint64_t, sdbus::ObjectPath>> ListProcesses() override;
    sdbus::UnixFd GetNamespace(const uint32_t& pid, const std::string& type) override;
    std::map<std::string, sdbus::UnixFd> GetNamespaces(
        const uint32_t& pid, const std::vector<std::string>& types) override;
    std::map<std::string, sdbus::Variant> GetProcessInfo(const uint32_t& pid) override;
    std::string Version() override;
    uint32_t TrackedProcesses() override;
    std::vector<std::string> KernelFeatures() override;

    Service& service_;
};

}  // namespace nsfd::daemon
