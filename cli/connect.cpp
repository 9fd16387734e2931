// SPDX-License-Identifier: LGPL-2.1-or-later
#include "connect.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace nsfd::cli {

namespace {

constexpr const char* kExpected =
    "tcp:HOST:PORT, udp:HOST:PORT (HOST a numeric IPv4 address or an IPv6 one in brackets), "
    "unix:PATH or unix:@NAME";

[[noreturn]] void refuse(std::string_view text, const std::string& why) {
    throw std::invalid_argument("Invalid ADDRESS '" + std::string(text) + "': " + why +
                                " (expected " + kExpected + ")");
}

void parseInet(std::string_view text, std::string_view rest, SocketAddress& out) {
    std::size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
        refuse(text, "no port");
    }
    std::string_view host = rest.substr(0, colon);
    std::string_view portText = rest.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
    if (ec != std::errc() || end != portText.data() + portText.size() || port == 0 ||
        port > 65535 || portText.front() == '0') {
        refuse(text, "the port must be a number from 1 to 65535");
    }
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        std::string address(host.substr(1, host.size() - 2));
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.address);
        if (::inet_pton(AF_INET6, address.c_str(), &in6->sin6_addr) != 1) {
            refuse(text, "'" + address + "' is not an IPv6 address");
        }
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(static_cast<std::uint16_t>(port));
        out.family = AF_INET6;
        out.length = sizeof(sockaddr_in6);
        return;
    }
    std::string address(host);
    auto* in = reinterpret_cast<sockaddr_in*>(&out.address);
    if (::inet_pton(AF_INET, address.c_str(), &in->sin_addr) != 1) {
        refuse(text, "'" + address + "' is not a numeric IPv4 address");
    }
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<std::uint16_t>(port));
    out.family = AF_INET;
    out.length = sizeof(sockaddr_in);
}

bool writeAll(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        ssize_t n = ::write(fd, data, size);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

}  // namespace

SocketAddress parseSocketAddress(std::string_view text) {
    SocketAddress out;
    out.text = std::string(text);
    if (text.starts_with("tcp:") || text.starts_with("udp:")) {
        out.type = text.starts_with("tcp:") ? SOCK_STREAM : SOCK_DGRAM;
        parseInet(text, text.substr(4), out);
        return out;
    }
    if (!text.starts_with("unix:") || text.size() == 5) {
        refuse(text, "unknown kind");
    }
    std::string_view path = text.substr(5);
    auto* un = reinterpret_cast<sockaddr_un*>(&out.address);
    if (path.size() >= sizeof(un->sun_path)) {
        refuse(text,
               "the path is longer than " + std::to_string(sizeof(un->sun_path) - 1) + " bytes");
    }
    un->sun_family = AF_UNIX;
    path.copy(un->sun_path, path.size());
    if (path.front() == '@') {
        un->sun_path[0] = '\0';  // abstract: the name without a terminating NUL
    }
    out.family = AF_UNIX;
    out.type = SOCK_STREAM;
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                        (path.front() == '@' ? 0 : 1));
    return out;
}

void connectAndCopy(UniqueFd socket, const SocketAddress& address) {
    if (::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address.address),
                  address.length) < 0) {
        throw std::system_error(errno, std::generic_category(),
                                "Failed to connect to " + address.text);
    }
    bool stream = address.type == SOCK_STREAM;
    bool inputOpen = true, socketOpen = true;
    char buffer[65536];
    while (socketOpen) {
        pollfd fds[2] = {{socket.get(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        int timeout = !inputOpen && !stream ? 1000 : -1;
        int r = ::poll(fds, inputOpen ? 2 : 1, timeout);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            throw std::system_error(errno, std::generic_category(), "poll");
        }
        if (r == 0) {
            break;  // datagrams: stdin ended and nothing came for a second
        }
        if (fds[0].revents != 0) {
            ssize_t n = ::read(socket.get(), buffer, sizeof(buffer));
            if (n < 0 && errno != EINTR && errno != EAGAIN) {
                throw std::system_error(errno, std::generic_category(),
                                        "Failed to read from " + address.text);
            }
            if (n == 0 && stream) {
                socketOpen = false;
            } else if (n > 0 && !writeAll(STDOUT_FILENO, buffer, static_cast<std::size_t>(n))) {
                throw std::system_error(errno, std::generic_category(), "Failed to write stdout");
            }
        }
        if (inputOpen && fds[1].revents != 0) {
            ssize_t n = ::read(STDIN_FILENO, buffer, sizeof(buffer));
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                inputOpen = false;
                if (stream) {
                    ::shutdown(socket.get(), SHUT_WR);
                }
            } else if (!writeAll(socket.get(), buffer, static_cast<std::size_t>(n))) {
                throw std::system_error(errno, std::generic_category(),
                                        "Failed to send to " + address.text);
            }
        }
    }
}

}  // namespace nsfd::cli
