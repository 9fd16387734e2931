// SPDX-License-Identifier: LGPL-2.1-or-later
// /org/nsfd1/process/ID: org.nsfd1.Process of every tracked process, served by
// one sd-bus fallback vtable. A process the caller may not see, or one being
// untracked, is not found: every interface at its path answers UnknownObject,
// and listings (Introspect, GetManagedObjects) leave it out.
#pragma once

#include <systemd/sd-bus.h>

#include "bus.hpp"

namespace nsfd::daemon {

class Service;
class TrackedProcess;

class ProcessObjects {
  public:
    ProcessObjects(sd_bus* bus, Service& service);

    // InterfacesAdded / InterfacesRemoved of the process's object.
    void announceAdded(const TrackedProcess& process);
    void announceRemoved(const TrackedProcess& process);
    // PropertiesChanged for State and ExitStatus, and Exited once reaped.
    void stateChanged(const TrackedProcess& process);

  private:
    static int find(sd_bus* bus, const char* path, const char* interface, void* userdata,
                    void** found, sd_bus_error* error);
    static int enumerate(sd_bus* bus, const char* prefix, void* userdata, char*** nodes,
                         sd_bus_error* error);

    sd_bus* bus_;
    Service& service_;
    BusSlot vtable_;
    BusSlot enumerator_;
};

}  // namespace nsfd::daemon
