// SPDX-License-Identifier: LGPL-2.1-or-later
// /org/nsfd1: org.nsfd1.Manager, and the object manager of the process objects.
#pragma once

#include <systemd/sd-bus.h>

#include "bus.hpp"

namespace nsfd::daemon {

class BusEndpoint;

class ManagerObject final {
  public:
    ManagerObject(BusEndpoint& endpoint);
    ManagerObject(const ManagerObject&) = delete;
    ManagerObject& operator=(const ManagerObject&) = delete;

  private:
    BusSlot vtable_;
    BusSlot objectManager_;
};

}  // namespace nsfd::daemon
