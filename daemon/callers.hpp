// SPDX-License-Identifier: LGPL-2.1-or-later
// Who is calling: the bus daemon's word on each unique sender, asked once and
// kept until the sender leaves the bus (unique names are never reused).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "authorizer.hpp"

namespace sdbus {
class IConnection;
class IProxy;
}  // namespace sdbus

namespace nsfd::daemon {

class CallerCache {
  public:
    explicit CallerCache(sdbus::IConnection& connection);
    ~CallerCache();

    // Throws ServiceError(AccessDenied) if the bus cannot say who `sender` is.
    const Caller& lookup(const std::string& sender);
    std::size_t size() const noexcept { return callers_.size(); }

  private:
    Caller query(const std::string& sender);

    std::unique_ptr<sdbus::IProxy> bus_;
    std::unordered_map<std::string, Caller> callers_;
};

}  // namespace nsfd::daemon
