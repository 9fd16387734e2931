// SPDX-License-Identifier: LGPL-2.1-or-later
// News of tracked processes, only for those who may see them. A client calls
// Manager.Subscribe; nsfdd then sends it, unicast, the news of each process it
// may see (the ReadInfo decision, synchronously): ProcessTracked,
// ProcessUntracked, ProcessExited, and on the process object
// PropertiesChanged (State, ExitStatus) and Exited. Nothing about a process is
// broadcast but the object manager's InterfacesAdded/InterfacesRemoved, which
// the bus policy (systemd/org.nsfd1.conf) lets only root receive, so that
// generic ObjectManager clients work for root. The manager's TrackedProcesses
// count is broadcast.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bus.hpp"
#include "core/event_loop.hpp"
#include "core/manager.hpp"

namespace nsfd::daemon {

class BusEndpoint;

class BusNews final : public ManagerObserver {
  public:
    explicit BusNews(BusEndpoint& endpoint);
    BusNews(const BusNews&) = delete;
    BusNews& operator=(const BusNews&) = delete;

    void processTracked(const TrackedProcess& process) override;
    void processStateChanged(const TrackedProcess& process) override;
    void processRemoved(const TrackedProcess& process) override;
    void trackedCountChanged(std::size_t count) override;

  private:
    // Sends news of `process` to every subscriber that may see it: `build`
    // appends to a signal addressed to one subscriber, with pids as it sees them.
    template <typename Build>
    void tell(const TrackedProcess& process, const char* path, const char* interface,
              const char* member, Build&& build);
    static int onTurn(sd_event_source* source, void* userdata);

    BusEndpoint& endpoint_;
    EventSource announce_;  // InterfacesAdded after the reply to TrackProcess
    std::vector<std::uint64_t> tracked_;
};

}  // namespace nsfd::daemon
