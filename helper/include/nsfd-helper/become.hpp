// SPDX-License-Identifier: LGPL-2.1-or-later
// The helper's one privileged step, for any operation that acts as a caller
// inside a target's namespaces: enter them, then become exactly the caller and
// nothing more. Call it in a child forked for this alone, single-threaded: it
// changes the whole process and cannot be undone.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>

#include "nsfd-helper/protocol.hpp"

namespace nsfd::helper {

struct Identity {
    uid_t uid = 0;
    gid_t gid = 0;
    std::span<const gid_t> groups;  // supplementary groups
};

struct NamespaceToEnter {
    int fd = -1;     // a namespace fd (not owned)
    int nsType = 0;  // its CLONE_NEW* flag, checked by setns(2)
};

// setns(2) into each of `namespaces`, in order; then, if `rootFd` >= 0,
// chroot(2) to that directory (needs CAP_SYS_CHROOT); then, for good: securebits
// NOROOT, locked (a root caller gains nothing at exec), no capability left in the bounding and
// ambient sets, `identity`'s groups, gid and uid in every slot (real,
// effective, saved, fs), no capability in the effective, permitted and
// inheritable sets, and no_new_privs; then reads every slot back, and sets
// again the parent-death signal that was set before (the kernel clears it at
// each uid or gid change, prctl(2); Step::DeathSignal if it cannot).
// Needs CAP_SYS_ADMIN (setns), CAP_SETPCAP (securebits, bounding set),
// CAP_SETGID and CAP_SETUID. Returns Step::None, or the step that failed with
// errno set (CheckIdentity: EPERM). Async-signal-safe: allocates nothing.
Step enterAndBecome(std::span<const NamespaceToEnter> namespaces, const Identity& identity,
                    int rootFd = -1) noexcept;

}  // namespace nsfd::helper
