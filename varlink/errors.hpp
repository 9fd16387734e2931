// SPDX-License-Identifier: LGPL-2.1-or-later
// The standard org.varlink.service error names (varlink.org) that nsfd uses:
// nsfdd's server sends them itself, libnsfd-client reads them. An interface's
// own errors are declared in its IDL and named by its endpoint
// (org.nsfd1.Manager's: varlinkErrorName() in nsfd/contract.hpp); the server
// sends two of them, named in ServerInfo.
#pragma once

namespace nsfd::varlink::error {

// {"interface": name}
inline constexpr const char* kInterfaceNotFound = "org.varlink.service.InterfaceNotFound";
// {"method": name}
inline constexpr const char* kMethodNotFound = "org.varlink.service.MethodNotFound";
// {"parameter": name}
inline constexpr const char* kInvalidParameter = "org.varlink.service.InvalidParameter";
// {}: the method streams its replies and must be called with "more": true.
inline constexpr const char* kExpectedMore = "org.varlink.service.ExpectedMore";

}  // namespace nsfd::varlink::error
