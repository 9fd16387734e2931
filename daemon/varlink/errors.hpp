// SPDX-License-Identifier: LGPL-2.1-or-later
// Error names on the Varlink socket: the standard org.varlink.service ones,
// which the server sends itself, and org.nsfd1.Manager's (declared, with their
// parameters, in dbus/org.nsfd1.Manager.varlink).
#pragma once

namespace nsfd::daemon::varlink::error {

// {"interface": name}
inline constexpr const char* kInterfaceNotFound = "org.varlink.service.InterfaceNotFound";
// {"method": name}
inline constexpr const char* kMethodNotFound = "org.varlink.service.MethodNotFound";
// {"method": name}
inline constexpr const char* kMethodNotImplemented = "org.varlink.service.MethodNotImplemented";
// {"parameter": name}
inline constexpr const char* kInvalidParameter = "org.varlink.service.InvalidParameter";
// {}: the method streams its replies and must be called with "more": true.
inline constexpr const char* kExpectedMore = "org.varlink.service.ExpectedMore";
// {}
inline constexpr const char* kPermissionDenied = "org.varlink.service.PermissionDenied";

inline constexpr const char* kNoSuchProcess = "org.nsfd1.Manager.NoSuchProcess";
inline constexpr const char* kProcessExited = "org.nsfd1.Manager.ProcessExited";
inline constexpr const char* kNotTracked = "org.nsfd1.Manager.NotTracked";
inline constexpr const char* kNotSupported = "org.nsfd1.Manager.NotSupported";
inline constexpr const char* kLimitExceeded = "org.nsfd1.Manager.LimitExceeded";
inline constexpr const char* kAccessDenied = "org.nsfd1.Manager.AccessDenied";
inline constexpr const char* kInvalidArgument = "org.nsfd1.Manager.InvalidArgument";
inline constexpr const char* kFailed = "org.nsfd1.Manager.Failed";

}  // namespace nsfd::daemon::varlink::error
