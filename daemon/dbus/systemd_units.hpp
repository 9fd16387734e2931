// SPDX-License-Identifier: LGPL-2.1-or-later
// The resolver's view of systemd and systemd-machined (core/resolver.hpp's
// UnitDirectory), asked over nsfdd's bus connection: a unit's MainPID and
// ControlGroup, a machine's Leader and its unit's ControlGroup.
#pragma once

#include <systemd/sd-bus.h>

#include "core/resolver.hpp"

namespace nsfd::daemon {

class SystemdUnits final : public UnitDirectory {
  public:
    // Not owned: the endpoint's connection, which outlives this.
    explicit SystemdUnits(sd_bus* bus) : bus_(bus) {}

    // Synchronous calls, each bounded (kTimeout): nsfdd's loop waits for them.
    std::optional<Unit> unit(const std::string& name) override;
    std::optional<Unit> machine(const std::string& name) override;

  private:
    sd_bus* bus_;
};

}  // namespace nsfd::daemon
