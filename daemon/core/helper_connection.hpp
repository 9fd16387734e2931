// SPDX-License-Identifier: LGPL-2.1-or-later
// How nsfdd reaches nsfd-helper, for OpenSocket (SocketHelper) and Spawn
// (CommandRunner) alike: run by hand as root, it starts the helper itself over
// a socketpair; under systemd (without the privilege) it connects to the
// helper's socket unit, which starts one helper per connection (Accept=yes).
#pragma once

#include <sys/types.h>

#include <string>

#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

struct HelperConnection {
    UniqueFd socket;    // SOCK_SEQPACKET, close-on-exec, blocking
    pid_t started = 0;  // the helper nsfdd started (its child, to reap); 0 under systemd
};

// Whether this process holds what the helper needs (CAP_SYS_ADMIN, CAP_SETUID,
// CAP_SETGID, CAP_SETPCAP, CAP_SYS_CHROOT, CAP_KILL), so may start it itself.
bool canStartHelper() noexcept;

// Starts `program` (with PR_SET_PDEATHSIG SIGKILL) if canStartHelper(), else
// connects to `socketPath` (`unit` names the socket unit in messages). Throws
// ServiceError (Failed) naming what failed and its errno.
HelperConnection connectHelper(const std::string& program, const char* socketPath,
                               const char* unit);

}  // namespace nsfd::daemon
