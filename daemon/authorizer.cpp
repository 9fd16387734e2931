// SPDX-License-Identifier: LGPL-2.1-or-later
#include "authorizer.hpp"

#include <algorithm>
#include <limits>

namespace nsfd::daemon {

bool Authorizer::isGranted(const Caller& caller, const Grant& grant) const {
    if (grant.uid) {
        return *grant.uid == caller.uid;
    }
    return grant.gid &&
           (*grant.gid == caller.gid || std::find(caller.groups.begin(), caller.groups.end(),
                                                  *grant.gid) != caller.groups.end());
}

bool Authorizer::kernelWouldAllow(const Caller& caller, const Target& target) const {
    const Credentials& c = target.creds;
    bool uidsMatch = c.ruid == caller.uid && c.euid == caller.uid && c.suid == caller.uid;
    bool gidsMatch = c.rgid == caller.gid && c.egid == caller.gid && c.sgid == caller.gid;
    return uidsMatch && gidsMatch && target.dumpable;
}

bool Authorizer::mayReadInfo(const Caller& caller, const Credentials& target) const {
    if (caller.isRoot() || target.ruid == caller.uid) {
        return true;
    }
    return std::any_of(config_.grants.begin(), config_.grants.end(),
                       [&](const Grant& g) { return g.info && isGranted(caller, g); });
}

bool Authorizer::mayGetNamespace(const Caller& caller, const Target& target, NsType type) const {
    if (caller.isRoot() || kernelWouldAllow(caller, target)) {
        return true;
    }
    return std::any_of(config_.grants.begin(), config_.grants.end(), [&](const Grant& g) {
        return g.namespaces.count(type) > 0 && isGranted(caller, g);
    });
}

bool Authorizer::mayGetPidFd(const Caller& caller, const Target& target) const {
    if (caller.isRoot() || kernelWouldAllow(caller, target)) {
        return true;
    }
    return std::any_of(config_.grants.begin(), config_.grants.end(),
                       [&](const Grant& g) { return g.pidfd && isGranted(caller, g); });
}

bool Authorizer::maySignal(const Caller& caller, const Credentials& target) const {
    return caller.isRoot() || caller.uid == target.ruid || caller.uid == target.suid;
}

std::size_t Authorizer::trackQuota(const Caller& caller) const {
    return caller.isRoot() ? std::numeric_limits<std::size_t>::max() : config_.trackedPerUser;
}

}  // namespace nsfd::daemon
