// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <string>
#include <system_error>

namespace nsfd::detail {

// Throws std::system_error(err in generic_category, what): "what: strerror(err)".
[[noreturn]] void throwErrno(int err, const std::string& what);

// Pidfd ioctls a kernel does not know answer ENOTTY (and EINVAL from some
// older nsfs code); both mean "this kernel lacks it" to our callers.
[[noreturn]] void throwIoctlErrno(int err, const std::string& what);

}  // namespace nsfd::detail
