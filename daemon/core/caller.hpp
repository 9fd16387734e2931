// SPDX-License-Identifier: LGPL-2.1-or-later
// Who is calling, as an endpoint vouched for it: the bus daemon for D-Bus,
// the kernel (SO_PEERCRED) for Varlink.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

struct Caller {
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);  // its fsgid where known; -1 if unknown
    pid_t pid = 0;                       // in nsfdd's pid namespace
    std::vector<gid_t> groups;           // supplementary groups
    // Whether the caller lives in nsfdd's pid namespace. A caller in another
    // one writes and reads pids of its own namespace: nsfdd takes none from it
    // (ForeignPidNamespace) and shows it only pids it can see (see pidFor()).
    bool inOurPidNamespace = true;
    // Whom polkit is asked about: a D-Bus caller by its unique bus name
    // ("system-bus-name"); a Varlink caller by its process ("unix-process").
    std::string busName;
    std::uint64_t startTime = 0;  // of process `pid`, in clock ticks since boot (unix-process)
    // The caller allowed an authentication dialog for this call
    // (D-Bus ALLOW_INTERACTIVE_AUTHORIZATION; Varlink allowInteractiveAuthentication).
    bool allowInteractive = false;

    bool isRoot() const noexcept { return uid == 0; }
};

// What polkit calls a process's start time: field 22 of /proc/PID/stat, in
// clock ticks since boot (a unix-process subject). Throws std::system_error.
std::uint64_t processStartTime(pid_t pid);

// NS_GET_ID of the pid namespace of `pidfd`'s process; 0 if the kernel cannot
// say (before 6.11/6.12) or it has exited.
std::uint64_t pidNamespaceIdOf(const PidFd& pidfd) noexcept;

}  // namespace nsfd::daemon
