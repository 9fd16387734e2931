// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd-helper/become.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace nsfd::helper {

namespace {

int capget(cap_user_data_t data) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    return static_cast<int>(::syscall(SYS_capget, &header, data));
}

int capset(const cap_user_data_t data) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    return static_cast<int>(::syscall(SYS_capset, &header, data));
}

// Drops every capability from the bounding set: the kernel's numbering is
// dense, and PR_CAPBSET_READ answers EINVAL past the last one it knows.
bool dropBoundingSet() {
    for (unsigned long cap = 0;; ++cap) {
        int present = ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (present < 0) {
            return errno == EINVAL;
        }
        if (present == 1 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            return false;
        }
    }
}

bool isExactly(const Identity& identity) {
    uid_t ruid = 0, euid = 0, suid = 0;
    gid_t rgid = 0, egid = 0, sgid = 0;
    if (::getresuid(&ruid, &euid, &suid) < 0 || ::getresgid(&rgid, &egid, &sgid) < 0) {
        return false;
    }
    // setfsuid/setfsgid with an invalid id change nothing and return the current one.
    auto fsuid = static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1)));
    auto fsgid = static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1)));
    if (ruid != identity.uid || euid != identity.uid || suid != identity.uid ||
        fsuid != identity.uid || rgid != identity.gid || egid != identity.gid ||
        sgid != identity.gid || fsgid != identity.gid) {
        return false;
    }
    gid_t groups[kMaxGroups];
    int count = ::getgroups(static_cast<int>(kMaxGroups), groups);
    if (count < 0 || static_cast<std::size_t>(count) != identity.groups.size()) {
        return false;
    }
    for (int i = 0; i < count; ++i) {
        if (groups[i] != identity.groups[static_cast<std::size_t>(i)]) {
            return false;
        }
    }
    __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3] = {};
    if (capget(caps) < 0) {
        return false;
    }
    for (const auto& set : caps) {
        if (set.effective != 0 || set.permitted != 0 || set.inheritable != 0) {
            return false;
        }
    }
    return ::prctl(PR_CAPBSET_READ, 0, 0, 0, 0) == 0 &&
           ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, 0, 0, 0) == 0 &&
           ::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1;
}

}  // namespace

Step enterAndBecome(std::span<const NamespaceToEnter> namespaces, const Identity& identity,
                    int rootFd) noexcept {
    // The kernel clears the parent-death signal at every change of uid or
    // gid (prctl(2)); it is set again once they are the caller's.
    int deathSignal = 0;
    if (::prctl(PR_GET_PDEATHSIG, &deathSignal, 0, 0, 0) < 0) {
        deathSignal = 0;
    }
    for (const NamespaceToEnter& ns : namespaces) {
        if (::setns(ns.fd, ns.nsType) < 0) {
            return Step::EnterNamespace;
        }
    }
    // Entering a mount namespace moved the root to its root; a caller in a
    // chroot of it has its own.
    if (rootFd >= 0 && (::fchdir(rootFd) < 0 || ::chroot(".") < 0)) {
        return Step::ChangeRoot;
    }
    // Set while CAP_SETPCAP is still there; NOROOT: a root caller's exec gains
    // no capability either.
    if (::prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0) < 0) {
        return Step::SecureBits;
    }
    if (!dropBoundingSet()) {
        return Step::DropBounding;
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) {
        return Step::ClearAmbient;
    }
    if (::setgroups(identity.groups.size(), identity.groups.data()) < 0) {
        return Step::SetGroups;
    }
    // The raw syscalls change this thread only; the helper's child has no other.
    if (::syscall(SYS_setresgid, identity.gid, identity.gid, identity.gid) < 0) {
        return Step::SetGid;
    }
    if (::syscall(SYS_setresuid, identity.uid, identity.uid, identity.uid) < 0) {
        return Step::SetUid;
    }
    // A non-root uid has lost them already (no KEEP_CAPS); root has not.
    __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = {};
    if (capset(none) < 0) {
        return Step::DropCapabilities;
    }
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        return Step::NoNewPrivileges;
    }
    if (!isExactly(identity)) {
        errno = EPERM;
        return Step::CheckIdentity;
    }
    if (deathSignal != 0 && ::prctl(PR_SET_PDEATHSIG, deathSignal, 0, 0, 0) < 0) {
        return Step::DeathSignal;
    }
    return Step::None;
}

}  // namespace nsfd::helper
