// SPDX-License-Identifier: LGPL-2.1-or-later
// Who is calling, as an endpoint vouched for it: the bus daemon for D-Bus,
// the kernel (SO_PEERCRED, SO_PEERPIDFD) for Varlink. Fixed when the
// connection is first seen; whatever cannot be checked then counts against
// the caller (a foreign pid namespace, a sandbox, no start time for polkit).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

// nsfdd's own pid and user namespaces (NS_GET_ID), what a caller's are compared to.
struct OwnNamespaces {
    std::uint64_t pid = 0;   // 0: the kernel cannot say (no NS_GET_ID)
    std::uint64_t user = 0;  // 0: likewise

    // Those of the calling process. Never throws: unknown ids stay 0.
    static OwnNamespaces ofSelf() noexcept;
};

struct Caller {
    uid_t uid = static_cast<uid_t>(-1);  // as nsfdd's user namespace sees it (the kernel's kuid)
    gid_t gid = static_cast<gid_t>(-1);  // its fsgid where known; -1 if unknown
    pid_t pid = 0;                       // in nsfdd's pid namespace
    std::vector<gid_t> groups;           // supplementary groups
    // Whether the caller lives in nsfdd's pid namespace. A caller in another
    // one writes and reads pids of its own namespace: nsfdd takes none from it
    // (ForeignPidNamespace) and shows it only pids it can see (see pidFor()).
    // False as well when its process could not be checked.
    bool inOurPidNamespace = true;
    // NS_GET_ID of its pid namespace; 0 if unknown. A caller outside nsfdd's
    // pid namespace sees, by the kernel rule, only processes with a pid in
    // this one or one below it; with 0, none.
    std::uint64_t pidNamespace = 0;
    // Whether it lives in nsfdd's user namespace. A caller in another one (a
    // rootless container, a flatpak or bwrap sandbox) is a sandbox of its
    // user, not the user: it is never root, and only grants marked
    // `sandboxed` apply to it. False as well when it could not be checked.
    bool inOurUserNamespace = true;
    std::uint64_t userNamespace = 0;                    // NS_GET_ID; 0 if unknown
    uid_t userNamespaceOwner = static_cast<uid_t>(-1);  // NS_GET_OWNER_UID
    // Whom the uids of its user namespace belong to (outermostOwnerUid()): the
    // owner of the outermost user namespace below nsfdd's on the way to it.
    // -1 in nsfdd's own user namespace, or if it could not be checked.
    uid_t userNamespaceUser = static_cast<uid_t>(-1);
    // The calling process, held since its connection was first seen: what
    // polkit is asked about, and whether it has exited since. Null if it had
    // exited (or could not be opened) by then.
    std::shared_ptr<const PidFd> pidfd;
    // A D-Bus caller's unique bus name; "" on Varlink.
    std::string busName;
    // Of process `pid`, in clock ticks since boot (polkit's unix-process
    // subject), read while `pidfd` showed it alive; 0 if unknown: polkit is
    // then not asked (it would judge whichever process has the pid).
    std::uint64_t startTime = 0;
    // The caller allowed an authentication dialog for this call
    // (D-Bus ALLOW_INTERACTIVE_AUTHORIZATION; Varlink allowInteractiveAuthentication).
    bool allowInteractive = false;

    // Root in nsfdd's user namespace: root everywhere, as the kernel treats it.
    // uid 0 of a user namespace of its own is a sandbox.
    bool isRoot() const noexcept { return uid == 0 && inOurUserNamespace; }
    bool isSandboxed() const noexcept { return !inOurUserNamespace; }
    // Whose share of a per-user bound it uses (issue 22): its uid, or for a
    // caller in a user namespace below nsfdd's, that namespace's user, so that
    // a rootless container's subordinate uids give its user no extra share.
    uid_t account() const noexcept {
        return inOurUserNamespace || userNamespaceUser == static_cast<uid_t>(-1)
                   ? uid
                   : userNamespaceUser;
    }
    // How a message names account(): "uid 1000", or "uid 1000, owner of the
    // caller's user namespace".
    std::string describeAccount() const;
};

// Fills in what the process behind a connection says of the caller, from
// `pidfd` (the peer's pidfd from the kernel, or one opened by the pid the bus
// gave): its pid and user namespaces and its start time, each trusted only if
// the process was alive after it was read (so that /proc/PID named it). Whatever
// cannot be read is left failing closed: foreign pid namespace, sandbox, no
// start time. Keeps `pidfd` in the caller. Never throws.
void identifyProcess(Caller& caller, std::shared_ptr<const PidFd> pidfd,
                     const OwnNamespaces& own) noexcept;

// What polkit calls a process's start time: field 22 of /proc/PID/stat, in
// clock ticks since boot (a unix-process subject). Throws std::system_error.
std::uint64_t processStartTime(pid_t pid);

// The NS_GET_IDs of the pid namespace of `pidfd`'s process and of each above it
// up to nsfdd's own, innermost first: the namespaces the process has a pid in,
// as far as nsfdd can see. Empty if the process has exited or the kernel
// cannot say (the ioctls need a live process). Never throws.
std::vector<std::uint64_t> pidNamespaceChain(const PidFd& pidfd) noexcept;

}  // namespace nsfd::daemon
