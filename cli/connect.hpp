// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdctl connect: socat's `- ADDRESS` on a socket nsfdd made inside a
// process's network namespace. The address is read and connected here, in
// nsfdctl; only the socket comes from nsfdd.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>

#include "nsfd/unique_fd.hpp"

namespace nsfd::cli {

struct SocketAddress {
    int family = 0;  // AF_INET, AF_INET6, AF_UNIX
    int type = 0;    // SOCK_STREAM, SOCK_DGRAM
    sockaddr_storage address{};
    socklen_t length = 0;
    std::string text;  // as written
};

// tcp:HOST:PORT, udp:HOST:PORT (HOST a numeric IPv4 or [IPv6] address: a name
// would be resolved in nsfdctl's network namespace, not the target's),
// unix:PATH, unix:@NAME (abstract: per network namespace). Throws
// std::invalid_argument saying what was expected.
SocketAddress parseSocketAddress(std::string_view text);

// connect(2)s `socket` to `address`, then copies stdin to it and it to stdout
// until both ends are closed (a datagram socket: until stdin ends and no
// datagram came for a second). Throws std::system_error naming the address.
void connectAndCopy(UniqueFd socket, const SocketAddress& address);

}  // namespace nsfd::cli
