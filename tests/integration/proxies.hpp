// SPDX-License-Identifier: LGPL-2.1-or-later
// Test proxies on the generated glue, recording the signals they receive.
#pragma once

#include <sdbus-c++/sdbus-c++.h>

#include <map>
#include <string>
#include <vector>

#include "nsfd/dbus_names.hpp"
#include "nsfd/generated/manager_proxy.h"
#include "nsfd/generated/process_proxy.h"

namespace nsfd::test {

struct ExitSignal {
    sdbus::ObjectPath path;
    uint32_t pid;
    uint64_t id;
    int32_t waitStatus;
};

class ManagerProxy final
    : public sdbus::ProxyInterfaces<org::nsfd1::Manager_proxy, sdbus::ObjectManager_proxy,
                                    sdbus::Properties_proxy> {
  public:
    // `subscribe`: ask for nsfdd's news (Manager.Subscribe), as every client
    // that listens does.
    explicit ManagerProxy(sdbus::IConnection& connection, bool subscribe = true)
        : ProxyInterfaces(connection, nsfd::dbus::kBusName, nsfd::dbus::kManagerPath) {
        registerProxy();
        if (subscribe) {
            Subscribe();
        }
    }
    ~ManagerProxy() { unregisterProxy(); }

    std::vector<ExitSignal> exits;
    std::vector<std::string> trackedNews;    // ProcessTracked
    std::vector<std::string> untrackedNews;  // ProcessUntracked
    std::vector<std::string> added;
    std::vector<std::string> removed;

  private:
    void onProcessExited(const sdbus::ObjectPath& process, const uint32_t& pid, const uint64_t& id,
                         const int32_t& waitStatus) override {
        exits.push_back({process, pid, id, waitStatus});
    }
    void onProcessTracked(const sdbus::ObjectPath& process, const uint32_t&,
                          const uint64_t&) override {
        trackedNews.push_back(process);
    }
    void onProcessUntracked(const sdbus::ObjectPath& process, const uint64_t&) override {
        untrackedNews.push_back(process);
    }
    void onInterfacesAdded(
        const sdbus::ObjectPath& path,
        const std::map<std::string, std::map<std::string, sdbus::Variant>>&) override {
        added.push_back(path);
    }
    void onInterfacesRemoved(const sdbus::ObjectPath& path,
                             const std::vector<std::string>&) override {
        removed.push_back(path);
    }
    void onPropertiesChanged(const std::string&, const std::map<std::string, sdbus::Variant>&,
                             const std::vector<std::string>&) override {}
};

class ProcessProxy final
    : public sdbus::ProxyInterfaces<org::nsfd1::Process_proxy, sdbus::Properties_proxy> {
  public:
    ProcessProxy(sdbus::IConnection& connection, const std::string& path)
        : ProxyInterfaces(connection, nsfd::dbus::kBusName, path) {
        registerProxy();
    }
    ~ProcessProxy() { unregisterProxy(); }

    std::vector<int32_t> exits;
    std::vector<std::string> states;  // State values seen in PropertiesChanged

  private:
    void onExited(const int32_t& waitStatus) override { exits.push_back(waitStatus); }
    void onPropertiesChanged(const std::string&,
                             const std::map<std::string, sdbus::Variant>& changed,
                             const std::vector<std::string>&) override {
        if (auto it = changed.find("State"); it != changed.end()) {
            states.push_back(it->second.get<std::string>());
        }
    }
};

}  // namespace nsfd::test
