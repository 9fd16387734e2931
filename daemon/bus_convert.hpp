// SPDX-License-Identifier: LGPL-2.1-or-later
// Core values into D-Bus types and back.
#pragma once

#include <sdbus-c++/Types.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "nsfd/info.hpp"
#include "nsfd/unique_fd.hpp"
#include "service.hpp"

namespace nsfd::daemon {

// The a{sv} of GetInfo and GetProcessInfo.
std::map<std::string, sdbus::Variant> infoDict(const Info& info, std::uint64_t id,
                                               std::string_view state,
                                               std::optional<int> exitStatus);

std::map<std::string, sdbus::UnixFd> fdDict(NamespaceFds&& fds);

// Hands an owned fd to sdbus-c++ without a copy (its int constructor dup()s).
inline sdbus::UnixFd toUnixFd(UniqueFd fd) {
    return sdbus::UnixFd(fd.release(), sdbus::adopt_fd);
}

// Takes the fd out of a received sdbus::UnixFd, close-on-exec (sdbus-c++ 1.2
// dup()s it without the flag).
UniqueFd fromUnixFd(const sdbus::UnixFd& fd);

}  // namespace nsfd::daemon
