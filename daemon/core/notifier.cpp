// SPDX-License-Identifier: LGPL-2.1-or-later
#include "notifier.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include <spdlog/spdlog.h>

namespace nsfd::daemon {

Notifier::Notifier() {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (path == nullptr || (path[0] != '/' && path[0] != '@') ||
        std::strlen(path) >= sizeof(address_.sun_path)) {
        return;  // none, or a kind nsfdd does not speak (vsock): stay silent
    }
    address_.sun_family = AF_UNIX;
    std::size_t length = std::strlen(path);
    std::memcpy(address_.sun_path, path, length);
    if (path[0] == '@') {
        address_.sun_path[0] = '\0';  // abstract namespace: no trailing NUL counts
    } else {
        ++length;
    }
    addressLength_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
    socket_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (socket_.get() < 0) {
        throw std::system_error(errno, std::generic_category(), "Failed to create a socket");
    }
}

void Notifier::send(std::string_view message, int fd) const {
    if (!active()) {
        return;
    }
    iovec data{const_cast<char*>(message.data()), message.size()};
    msghdr header{};
    header.msg_name = const_cast<sockaddr_un*>(&address_);
    header.msg_namelen = addressLength_;
    header.msg_iov = &data;
    header.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0) {
        header.msg_control = control;
        header.msg_controllen = sizeof(control);
        cmsghdr* rights = CMSG_FIRSTHDR(&header);
        rights->cmsg_level = SOL_SOCKET;
        rights->cmsg_type = SCM_RIGHTS;
        rights->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(rights), &fd, sizeof(int));
    }
    // The manager learns who sends from the kernel (SO_PASSCRED on its side).
    while (::sendmsg(socket_.get(), &header, MSG_NOSIGNAL) < 0) {
        if (errno != EINTR) {
            spdlog::warn("Failed to send '{}' to the service manager, ignoring: {}",
                         message.substr(0, message.find('\n')), std::strerror(errno));
            return;
        }
    }
}

}  // namespace nsfd::daemon
