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
    // MSG_CTRUNC although there was room for the most fds one read can bring
    // (SCM_MAX_FD): the kernel could not install them all in this process
    // (scm_detach_fds: RLIMIT_NOFILE, the system's file limit, an LSM), and
    // those it could not are gone. The receiver's limit, not the sender's doing.
    bool fdsNotReceived = false;
};

// One non-blocking recvmsg(MSG_CMSG_CLOEXEC) into `buffer`, with room for the
// kernel's most fds (SCM_MAX_FD; a read never brings fds of two writes, see
// codec.hpp). Returns 0 or -errno (-EAGAIN: nothing to read).
int receiveWithFds(int socket, std::span<char> buffer, Received& received);

// One non-blocking sendmsg(MSG_NOSIGNAL) of `data`, with `fds` as SCM_RIGHTS
// when not empty (at most SCM_MAX_FD, 253; more is -EINVAL, as sendmsg(2)
// says). Returns the bytes sent or -errno. The fds stay the caller's: the
// kernel takes references of its own.
ssize_t sendWithFds(int socket, std::span<const iovec> data, std::span<const int> fds);
ssize_t sendWithFds(int socket, std::span<const iovec> data, std::span<const UniqueFd> fds);

}  // namespace nsfd::varlink
