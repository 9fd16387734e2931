// SPDX-License-Identifier: LGPL-2.1-or-later
// /org/nsfd1: org.nsfd1.Manager, and the object manager of the process objects.
#pragma once

#include <systemd/sd-bus.h>

#include "bus.hpp"

namespace nsfd::daemon {

class Service;
class TrackedProcess;

class ManagerObject {
  public:
    ManagerObject(sd_bus* bus, Service& service);

    // PropertiesChanged for TrackedProcesses.
    void trackedCountChanged();
    // ProcessExited: a tracked process was reaped.
    void processExited(const TrackedProcess& process);

  private:
    sd_bus* bus_;
    BusSlot vtable_;
    BusSlot objectManager_;
};

}  // namespace nsfd::daemon
