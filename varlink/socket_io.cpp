// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink/socket_io.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace nsfd::varlink {

namespace {

// SCM_MAX_FD in the kernel: no message carries more.
constexpr std::size_t kKernelMaxFds = 253;

// Room for the kernel's most fds, on the stack: no allocation per message.
union ControlBuffer {
    cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(int) * kKernelMaxFds)];
};

int fdNumber(int fd) {
    return fd;
}
int fdNumber(const UniqueFd& fd) {
    return fd.get();
}

}  // namespace

int receiveWithFds(int socket, std::span<char> buffer, Received& received) {
    // Room for every fd a read can bring, so that MSG_CTRUNC can only mean fds
    // the kernel could not install here (the decoder judges how many are too many).
    ControlBuffer control;
    iovec iov{buffer.data(), buffer.size()};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control.bytes;
    message.msg_controllen = sizeof(control.bytes);
    ssize_t n = ::recvmsg(socket, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
        return -errno;
    }
    received.bytes = static_cast<std::size_t>(n);
    received.fds.clear();
    received.fdsNotReceived = (message.msg_flags & MSG_CTRUNC) != 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            received.fds.emplace_back(fd);
        }
    }
    return 0;
}

namespace {

// The fd numbers go straight into the control message: no list of them is
// built first (a reply's fds are UniqueFds).
template <typename Fd>
ssize_t sendWith(int socket, std::span<const iovec> data, std::span<const Fd> fds) {
    msghdr message{};
    message.msg_iov = const_cast<iovec*>(data.data());
    message.msg_iovlen = data.size();
    ControlBuffer control;
    if (!fds.empty()) {
        if (fds.size() > kKernelMaxFds) {
            return -EINVAL;  // what sendmsg(2) would say
        }
        message.msg_control = control.bytes;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&message);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        unsigned char* out = CMSG_DATA(c);
        for (const Fd& fd : fds) {
            int number = fdNumber(fd);
            std::memcpy(out, &number, sizeof(number));
            out += sizeof(number);
        }
    }
    ssize_t n = ::sendmsg(socket, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n < 0 ? -errno : n;
}

}  // namespace

ssize_t sendWithFds(int socket, std::span<const iovec> data, std::span<const int> fds) {
    return sendWith(socket, data, fds);
}

ssize_t sendWithFds(int socket, std::span<const iovec> data, std::span<const UniqueFd> fds) {
    return sendWith(socket, data, fds);
}

}  // namespace nsfd::varlink
