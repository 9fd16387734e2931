// SPDX-License-Identifier: LGPL-2.1-or-later
// Who may do what to which process. Pure decisions: no bus, no logging.
#pragma once

#include <sys/types.h>

#include <vector>

#include "config.hpp"
#include "nsfd/info.hpp"
#include "nsfd/ns.hpp"

namespace nsfd::daemon {

// A D-Bus caller, as the bus daemon vouched for it when it connected.
struct Caller {
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);  // its fsgid when looked up; -1 if unknown
    pid_t pid = 0;
    std::vector<gid_t> groups;  // supplementary groups

    bool isRoot() const noexcept { return uid == 0; }
};

// The target as the kernel's rules see it.
struct Target {
    Credentials creds;
    bool dumpable = false;
};

class Authorizer {
  public:
    explicit Authorizer(const Config& config) : config_(config) {}

    // Info, namespace ids, listing, tracking: the caller's own processes (by real uid),
    // or any with an `info` grant.
    bool mayReadInfo(const Caller& caller, const Credentials& target) const;

    // Namespace fds: what the kernel would give the caller itself (ptrace's
    // PTRACE_MODE_READ_FSCREDS: every uid and gid of the target is the caller's,
    // and the target is dumpable), or a grant for that namespace type.
    bool mayGetNamespace(const Caller& caller, const Target& target, NsType type) const;

    // The pidfd itself: the same kernel rule, or a `pidfd` grant.
    bool mayGetPidFd(const Caller& caller, const Target& target) const;

    // kill(2)'s rule: the caller's uid is the target's real or saved uid.
    bool maySignal(const Caller& caller, const Credentials& target) const;

    // pidfd_getfd: root only.
    bool mayGetFd(const Caller& caller) const { return caller.isRoot(); }

    // How many processes a caller may track at once; unbounded for root.
    std::size_t trackQuota(const Caller& caller) const;

  private:
    bool kernelWouldAllow(const Caller& caller, const Target& target) const;
    bool isGranted(const Caller& caller, const Grant& grant) const;

    const Config& config_;
};

}  // namespace nsfd::daemon
