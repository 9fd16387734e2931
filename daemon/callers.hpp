// SPDX-License-Identifier: LGPL-2.1-or-later
// Who is calling: the bus daemon's word on each unique sender, asked once and
// kept until the sender leaves the bus (unique names are never reused).
#pragma once

#include <string>
#include <unordered_map>

#include "authorizer.hpp"
#include "bus.hpp"

namespace nsfd::daemon {

class CallerCache {
  public:
    // Throws std::system_error if the bus refuses the NameOwnerChanged match.
    explicit CallerCache(sd_bus* bus);

    // Throws ServiceError(AccessDenied) if the bus cannot say who `sender` is.
    const Caller& lookup(const std::string& sender);
    std::size_t size() const noexcept { return callers_.size(); }

  private:
    Caller query(const std::string& sender);
    static int onNameOwnerChanged(sd_bus_message* signal, void* userdata, sd_bus_error* error);

    sd_bus* bus_;
    BusSlot nameOwnerChanged_;
    std::unordered_map<std::string, Caller> callers_;
};

}  // namespace nsfd::daemon
