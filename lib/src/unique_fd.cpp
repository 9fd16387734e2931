// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd/unique_fd.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "error.hpp"

namespace nsfd {

void UniqueFd::reset(int fd) noexcept {
    if (fd_ >= 0) {
        int savedErrno = errno;
        // Linux closes the fd even when close() fails (EINTR included): never retry.
        ::close(fd_);
        errno = savedErrno;
    }
    fd_ = fd;
}

UniqueFd UniqueFd::duplicate() const {
    return duplicateFd(fd_);
}

UniqueFd duplicateFd(int fd) {
    int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy < 0) {
        detail::throwErrno(errno, "Failed to duplicate fd " + std::to_string(fd));
    }
    return UniqueFd(copy);
}

}  // namespace nsfd
