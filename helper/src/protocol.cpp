// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd-helper/protocol.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace nsfd::helper {

const char* describe(Step step) noexcept {
    switch (step) {
        case Step::None:
            return "nothing";
        case Step::Request:
            return "read the request";
        case Step::Fork:
            return "fork a child to act as the caller";
        case Step::EnterNamespace:
            return "enter the network namespace";
        case Step::SecureBits:
            return "lock the securebits";
        case Step::DropBounding:
            return "empty the capability bounding set";
        case Step::ClearAmbient:
            return "empty the ambient capability set";
        case Step::SetGroups:
            return "take the caller's supplementary groups";
        case Step::SetGid:
            return "take the caller's gid";
        case Step::SetUid:
            return "take the caller's uid";
        case Step::DropCapabilities:
            return "drop every capability";
        case Step::NoNewPrivileges:
            return "set no_new_privs";
        case Step::CheckIdentity:
            return "check the identity taken";
        case Step::Socket:
            return "create the socket";
        case Step::ChangeRoot:
            return "change to the caller's root directory";
        case Step::ChangeDirectory:
            return "change to the caller's working directory";
        case Step::Stdio:
            return "take the caller's stdin, stdout and stderr";
        case Step::DeathSignal:
            return "set the parent-death signal again";
        case Step::JoinCgroup:
            break;
    }
    return "move the command into the run's cgroup";
}

int sendMessage(int socket, const void* data, std::size_t size, int fd) noexcept {
    return sendMessageFds(socket, data, size, &fd, fd >= 0 ? 1 : 0);
}

ssize_t receiveMessage(int socket, void* buffer, std::size_t size, int* fd, int flags) noexcept {
    std::size_t count = 0;
    int received = -1;
    ssize_t n = receiveMessageFds(socket, buffer, size, &received, 1, &count, flags);
    *fd = count == 1 ? received : -1;
    return n;
}

int sendMessageFds(int socket, const void* data, std::size_t size, const int* fds,
                   std::size_t count) noexcept {
    if (count > kMaxSpawnFds) {
        return -EINVAL;
    }
    iovec iov{const_cast<void*>(data), size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxSpawnFds)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (count > 0) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
        cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
        std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * count);
    }
    ssize_t n;
    do {
        n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    return static_cast<std::size_t>(n) == size ? 0 : -EMSGSIZE;
}

ssize_t receiveMessageFds(int socket, void* buffer, std::size_t size, int* fds, std::size_t maxFds,
                          std::size_t* count, int flags) noexcept {
    *count = 0;
    iovec iov{buffer, size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxSpawnFds + 4))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n;
    do {
        n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | flags);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    bool tooMany = false;
    for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        std::size_t received = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < received; ++i) {
            int fd = -1;
            std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
            if (*count < maxFds) {
                fds[(*count)++] = fd;
            } else {
                ::close(fd);
                tooMany = true;
            }
        }
    }
    if (tooMany || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
        for (std::size_t i = 0; i < *count; ++i) {
            ::close(fds[i]);
        }
        *count = 0;
        return -EMSGSIZE;
    }
    return n;
}

}  // namespace nsfd::helper
