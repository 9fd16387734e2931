// SPDX-License-Identifier: LGPL-2.1-or-later
// Who is at the other end of a connection, from the socket itself: no round trip.
#pragma once

#include <sys/types.h>

#include <optional>
#include <vector>

#include "nsfd/pidfd.hpp"

namespace nsfd::daemon::varlink {

struct Peer {
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
    pid_t pid = 0;  // at connect(2) time; pidfd pins it
    std::vector<gid_t> groups;
    // SO_PEERPIDFD (kernel 6.5+): the peer's process, immune to pid reuse,
    // for the connection's life. Empty on older kernels: then only pid is known.
    std::optional<PidFd> pidfd;
    // Whom its connections count against (per-uid bounds): `uid`, or for a
    // peer in a user namespace below nsfdd's, that namespace's user
    // (outermostOwnerUid(): a rootless container's uids are its user's).
    // `uid` if the process was gone before nsfdd looked, or no pidfd.
    uid_t account = static_cast<uid_t>(-1);
};

// Reads SO_PEERCRED (required: throws std::system_error without it),
// SO_PEERGROUPS and SO_PEERPIDFD (each left empty where the kernel lacks it).
Peer readPeer(int socket);

}  // namespace nsfd::daemon::varlink
