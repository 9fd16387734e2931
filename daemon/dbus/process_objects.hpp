// SPDX-License-Identifier: LGPL-2.1-or-later
// /org/nsfd1/process/ID: org.nsfd1.Process of every tracked process, served by
// one sd-bus fallback vtable. A process the caller may not see is not found:
// every interface at its path answers UnknownObject, and listings
// (Introspect, GetManagedObjects) leave it out. Seeing it is the ReadInfo
// decision, taken synchronously (Manager::isVisible); property reads need no
// more. Every method asks the authorization step for its own action.
#pragma once

#include <systemd/sd-bus.h>

#include "bus.hpp"

namespace nsfd::daemon {

class BusEndpoint;

class ProcessObjects final {
  public:
    explicit ProcessObjects(BusEndpoint& endpoint);
    ProcessObjects(const ProcessObjects&) = delete;
    ProcessObjects& operator=(const ProcessObjects&) = delete;

  private:
    static int find(sd_bus* bus, const char* path, const char* interface, void* userdata,
                    void** found, sd_bus_error* error);
    static int enumerate(sd_bus* bus, const char* prefix, void* userdata, char*** nodes,
                         sd_bus_error* error);

    BusEndpoint& endpoint_;
    BusSlot vtable_;
    BusSlot enumerator_;
};

}  // namespace nsfd::daemon
