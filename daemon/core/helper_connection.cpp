// SPDX-License-Identifier: LGPL-2.1-or-later
#include "helper_connection.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "errors.hpp"
#include "nsfd-helper/protocol.hpp"

namespace nsfd::daemon {

namespace {

std::string errnoText(int err) {
    return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

}  // namespace

bool canStartHelper() noexcept {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) < 0) {
        return false;
    }
    auto has = [&](int cap) {
        return (data[CAP_TO_INDEX(cap)].effective & CAP_TO_MASK(cap)) != 0 &&
               ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1;
    };
    return has(CAP_SYS_ADMIN) && has(CAP_SETUID) && has(CAP_SETGID) && has(CAP_SETPCAP) &&
           has(CAP_SYS_CHROOT) && has(CAP_KILL);
}

HelperConnection connectHelper(const std::string& program, const char* socketPath,
                               const char* unit) {
    namespace wire = nsfd::helper;
    HelperConnection out;
    if (canStartHelper()) {
        int pair[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
            throw ServiceError(ErrorKind::Failed,
                               "Failed to make a socketpair for nsfd-helper: " + errnoText(errno));
        }
        UniqueFd ours(pair[0]), theirs(pair[1]);
        char* const argv[] = {const_cast<char*>(program.c_str()), nullptr};
        char* const envp[] = {nullptr};
        pid_t pid = ::fork();
        if (pid == 0) {
            // Only async-signal-safe calls until exec: nsfdd may have threads.
            int fd = theirs.get();
            if (fd == wire::kConnectionFd) {
                ::fcntl(fd, F_SETFD, 0);
            } else if (::dup2(fd, wire::kConnectionFd) < 0) {
                ::_exit(127);
            }
            ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            ::execve(argv[0], argv, envp);
            ::_exit(127);
        }
        if (pid < 0) {
            throw ServiceError(ErrorKind::Failed, "Failed to start nsfd-helper (" + program +
                                                      "): fork: " + errnoText(errno));
        }
        out.started = pid;
        out.socket = std::move(ours);
        spdlog::debug("Started nsfd-helper {} (pid {})", program, pid);
        return out;
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socketPath, sizeof(addr.sun_path) - 1);
    if (!fd.ok() || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
        throw ServiceError(ErrorKind::Failed, std::string("Failed to reach nsfd-helper at ") +
                                                  socketPath + " (" + unit +
                                                  "): " + errnoText(errno));
    }
    out.socket = std::move(fd);
    return out;
}

}  // namespace nsfd::daemon
