// SPDX-License-Identifier: LGPL-2.1-or-later
// Names of the nsfd D-Bus contract shared by nsfdd and libnsfd-client.
#pragma once

namespace nsfd::dbus {

inline constexpr const char* kBusName = "org.nsfd1";
inline constexpr const char* kManagerPath = "/org/nsfd1";
inline constexpr const char* kProcessPathPrefix = "/org/nsfd1/process/";
inline constexpr const char* kManagerInterface = "org.nsfd1.Manager";
inline constexpr const char* kProcessInterface = "org.nsfd1.Process";

// The errors nsfdd replies with. Each message names the bad value.
namespace error {
inline constexpr const char* kNoSuchProcess = "org.nsfd1.Error.NoSuchProcess";
inline constexpr const char* kProcessExited = "org.nsfd1.Error.ProcessExited";
inline constexpr const char* kNotTracked = "org.nsfd1.Error.NotTracked";
inline constexpr const char* kNotSupported = "org.nsfd1.Error.NotSupported";
inline constexpr const char* kLimitExceeded = "org.nsfd1.Error.LimitExceeded";
inline constexpr const char* kFailed = "org.nsfd1.Error.Failed";
inline constexpr const char* kAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";
inline constexpr const char* kInvalidArgs = "org.freedesktop.DBus.Error.InvalidArgs";
}  // namespace error

}  // namespace nsfd::dbus
