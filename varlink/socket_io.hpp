// SPDX-License-Identifier: LGPL-2.1-or-later
// recvmsg/sendmsg with SCM_RIGHTS, for both ends of a Varlink connection.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <vector>

#include "nsfd/unique_fd.hpp"

namespace nsfd::varlink {

struct Received {
    std::size_t bytes = 0;      // 0: the peer shut down its end
    std::vector<UniqueFd> fds;  // close-on-exec, each owned once
    bool fdsTruncated = false;  // more fds were sent than `maxFds`; the rest are closed
};

// One non-blocking recvmsg(MSG_CMSG_CLOEXEC) into `buffer`, accepting up to
// `maxFds` fds. Returns 0 or -errno (-EAGAIN: nothing to read).
int receiveWithFds(int socket, std::span<char> buffer, std::size_t maxFds, Received& received);

// One non-blocking sendmsg(MSG_NOSIGNAL) of `data`, with `fds` as SCM_RIGHTS
// when not empty. Returns the bytes sent or -errno.
ssize_t sendWithFds(int socket, std::span<const iovec> data, std::span<const int> fds);

}  // namespace nsfd::varlink
