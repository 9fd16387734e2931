// SPDX-License-Identifier: LGPL-2.1-or-later
#include "peer.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <system_error>

// Debian 12's headers (Linux 6.1) predate SO_PEERPIDFD (6.5).
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace nsfd::daemon::varlink {

namespace {

std::vector<gid_t> readGroups(int socket) {
    std::vector<gid_t> groups(16);
    for (int attempt = 0; attempt < 4; ++attempt) {
        socklen_t length = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (::getsockopt(socket, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &length) == 0) {
            groups.resize(length / sizeof(gid_t));
            return groups;
        }
        if (errno != ERANGE) {
            return {};
        }
        // The kernel said how much room it needs.
        groups.resize(length / sizeof(gid_t) + 1);
    }
    return {};
}

std::optional<PidFd> readPidFd(int socket) {
    int pidfd = -1;
    socklen_t length = sizeof(pidfd);
    // The kernel's pidfd is close-on-exec. ENOPROTOOPT: a kernel before 6.5.
    if (::getsockopt(socket, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &length) != 0 ||
        length != sizeof(pidfd)) {
        return std::nullopt;
    }
    try {
        return PidFd::adopt(UniqueFd(pidfd));
    } catch (const std::system_error&) {
        return std::nullopt;  // not a pidfd after all: closed
    }
}

}  // namespace

Peer readPeer(int socket) {
    struct ucred cred {};
    socklen_t length = sizeof(cred);
    if (::getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
        throw std::system_error(errno, std::generic_category(), "Failed to read SO_PEERCRED");
    }
    Peer peer;
    peer.uid = cred.uid;
    peer.gid = cred.gid;
    peer.pid = cred.pid;
    peer.groups = readGroups(socket);
    peer.pidfd = readPidFd(socket);
    peer.account = peer.uid;
    if (peer.pidfd) {
        try {
            peer.account = outermostOwnerUid(peer.pidfd->userNamespace()).value_or(peer.uid);
        } catch (const std::system_error&) {
            // Exited (ESRCH): its own uid.
        }
    }
    return peer;
}

}  // namespace nsfd::daemon::varlink
