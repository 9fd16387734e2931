// SPDX-License-Identifier: LGPL-2.1-or-later
#include "caller.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>
#include <system_error>

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

std::uint64_t pidNamespaceIdOf(const PidFd& pidfd) noexcept {
    try {
        return pidfd.namespaceFd(NsType::Pid).id();
    } catch (const std::system_error&) {
        return 0;  // a kernel without the ioctls or NS_GET_ID
    }
}

}  // namespace nsfd::daemon
