// SPDX-License-Identifier: LGPL-2.1-or-later
#include "caller.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>
#include <system_error>

#include "nsfd/ns.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

std::uint64_t processStartTime(pid_t pid) {
    std::string path = "/proc/" + std::to_string(pid) + "/stat";
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.ok()) {
        throw std::system_error(errno, std::generic_category(), "Failed to open " + path);
    }
    std::string stat;
    char buf[1024];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            throw std::system_error(errno, std::generic_category(), "Failed to read " + path);
        }
        if (n == 0) {
            break;
        }
        stat.append(buf, static_cast<std::size_t>(n));
    }
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    std::size_t end = stat.rfind(')');
    std::istringstream fields(end == std::string::npos ? std::string() : stat.substr(end + 1));
    std::string field;
    for (int i = 3; i < 22 && fields >> field; ++i) {
    }
    std::uint64_t startTime = 0;
    if (!(fields >> startTime)) {
        throw std::system_error(EBADMSG, std::generic_category(), "Failed to parse " + path);
    }
    return startTime;
}

std::string Caller::describeAccount() const {
    uid_t owner = account();
    return "uid " + std::to_string(owner) +
           (owner == uid ? "" : ", owner of the caller's user namespace");
}

OwnNamespaces OwnNamespaces::ofSelf() noexcept {
    OwnNamespaces own;
    try {
        PidFd self = PidFd::self();
        own.pid = self.namespaceFd(NsType::Pid).id();
        own.user = self.namespaceFd(NsType::User).id();
    } catch (const std::exception&) {
        // A kernel without the ioctls: every caller then counts as foreign.
    }
    return own;
}

void identifyProcess(Caller& caller, std::shared_ptr<const PidFd> pidfd,
                     const OwnNamespaces& own) noexcept {
    caller.inOurPidNamespace = false;
    caller.inOurUserNamespace = false;
    caller.pidNamespace = 0;
    caller.userNamespace = 0;
    caller.userNamespaceUser = static_cast<uid_t>(-1);
    caller.startTime = 0;
    caller.pidfd.reset();
    if (!pidfd || pidfd->pid() <= 0) {
        return;
    }
    try {
        std::uint64_t pidNamespace = pidfd->namespaceFd(NsType::Pid).id();
        NsFd userNamespace = pidfd->namespaceFd(NsType::User);
        std::uint64_t userNamespaceId = userNamespace.id();
        uid_t owner = userNamespace.ownerUid();
        uid_t user = static_cast<uid_t>(-1);
        try {
            user = outermostOwnerUid(userNamespace).value_or(user);
        } catch (const std::system_error&) {
            // Cannot climb: the caller counts as its own uid.
        }
        std::uint64_t startTime = processStartTime(pidfd->pid());
        // Alive after /proc/PID was read: the pid named this process.
        if (pidfd->hasExited()) {
            return;
        }
        caller.pidNamespace = pidNamespace;
        caller.userNamespace = userNamespaceId;
        caller.userNamespaceOwner = owner;
        caller.userNamespaceUser = user;
        caller.inOurPidNamespace = own.pid != 0 && pidNamespace == own.pid;
        caller.inOurUserNamespace = own.user != 0 && userNamespaceId == own.user;
        caller.startTime = startTime;
        caller.pidfd = std::move(pidfd);
    } catch (const std::exception&) {
        // Gone, or a kernel that cannot say: the caller stays foreign and sandboxed.
    }
}

std::vector<std::uint64_t> pidNamespaceChain(const PidFd& pidfd) noexcept {
    std::vector<std::uint64_t> chain;
    try {
        NsFd ns = pidfd.namespaceFd(NsType::Pid);
        // 32 levels at most (the kernel's MAX_PID_NS_LEVEL).
        for (int level = 0; level <= 32; ++level) {
            chain.push_back(ns.id());
            try {
                ns = ns.parent();
            } catch (const std::system_error&) {
                break;  // EPERM: nsfdd's own pid namespace, or the initial one
            }
        }
    } catch (const std::exception&) {
        return {};
    }
    return chain;
}

}  // namespace nsfd::daemon
