// SPDX-License-Identifier: LGPL-2.1-or-later
// Names of the nsfd D-Bus contract shared by nsfdd and libnsfd-client: the bus
// name, paths and interfaces; the rest of the contract is in nsfd/contract.hpp.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nsfd/contract.hpp"

namespace nsfd::dbus {

inline constexpr const char* kBusName = "org.nsfd1";
inline constexpr const char* kManagerPath = "/org/nsfd1";
inline constexpr const char* kProcessPathPrefix = "/org/nsfd1/process/";
inline constexpr const char* kManagerInterface = "org.nsfd1.Manager";
inline constexpr const char* kProcessInterface = "org.nsfd1.Process";

// "/org/nsfd1/process/ID", ID being the process's pidfs id in decimal.
inline std::string processObjectPath(std::uint64_t id) {
    return kProcessPathPrefix + std::to_string(id);
}

// The id in a process object path, if it is one. Only the path
// processObjectPath() makes: "/org/nsfd1/process/007" names nothing.
inline std::optional<std::uint64_t> processIdOfPath(std::string_view path) {
    std::string_view prefix = kProcessPathPrefix;
    if (path.substr(0, prefix.size()) != prefix || path.size() == prefix.size()) {
        return std::nullopt;
    }
    path.remove_prefix(prefix.size());
    if (path[0] == '0') {
        return std::nullopt;  // a leading zero, or id 0, which pidfs never gives
    }
    std::uint64_t id = 0;
    auto [end, ec] = std::from_chars(path.data(), path.data() + path.size(), id);
    if (ec != std::errc() || end != path.data() + path.size()) {
        return std::nullopt;
    }
    return id;
}

// The errors nsfdd replies with, as C strings (nsfd/contract.hpp has the one
// table; its names are string literals, so data() ends with a NUL).
namespace error {
inline constexpr const char* kNoSuchProcess = dbusErrorName(ErrorKind::NoSuchProcess).data();
inline constexpr const char* kProcessExited = dbusErrorName(ErrorKind::ProcessExited).data();
inline constexpr const char* kNotTracked = dbusErrorName(ErrorKind::NotTracked).data();
inline constexpr const char* kNotSupported = dbusErrorName(ErrorKind::NotSupported).data();
inline constexpr const char* kLimitExceeded = dbusErrorName(ErrorKind::LimitExceeded).data();
inline constexpr const char* kFailed = dbusErrorName(ErrorKind::Failed).data();
inline constexpr const char* kAccessDenied = dbusErrorName(ErrorKind::AccessDenied).data();
inline constexpr const char* kInvalidArgs = dbusErrorName(ErrorKind::InvalidArgs).data();
inline constexpr const char* kForeignPidNamespace =
    dbusErrorName(ErrorKind::ForeignPidNamespace).data();
inline constexpr const char* kInteractiveAuthorizationRequired =
    dbusErrorName(ErrorKind::InteractiveAuthorizationRequired).data();
inline constexpr const char* kSocketFailed = dbusErrorName(ErrorKind::SocketFailed).data();
inline constexpr const char* kUnknownObject = kUnknownObjectError.data();
}  // namespace error

}  // namespace nsfd::dbus
