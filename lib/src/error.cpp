// SPDX-License-Identifier: LGPL-2.1-or-later
#include "error.hpp"

#include <cerrno>

namespace nsfd::detail {

void throwErrno(int err, const std::string& what) {
    throw std::system_error(err, std::generic_category(), what);
}

void throwIoctlErrno(int err, const std::string& what) {
    throwErrno(err == ENOTTY ? EOPNOTSUPP : err, what);
}

}  // namespace nsfd::detail
