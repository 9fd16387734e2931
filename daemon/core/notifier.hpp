// SPDX-License-Identifier: LGPL-2.1-or-later
// Messages to the service manager (sd_notify(3)'s protocol on $NOTIFY_SOCKET)
// through one socket kept open: systemd 252's sd_notify opens a socket and
// makes about ten syscalls for every message, and nsfdd sends two for each
// process it tracks (FDSTORE=1, STATUS=).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <string_view>

#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

class Notifier {
  public:
    // Reads $NOTIFY_SOCKET once. Without it (not started by systemd) every
    // send is a no-op. Throws std::system_error if the socket cannot be made.
    Notifier();

    bool active() const noexcept { return socket_.get() >= 0; }

    // Sends one message, with `fd` attached if it is not -1. Blocking, as
    // sd_notify is: the manager reads promptly, and a lost FDSTORE would lose a
    // process at the next restart. A failure is logged, not fatal.
    void send(std::string_view message, int fd = -1) const;

  private:
    UniqueFd socket_;
    sockaddr_un address_{};
    socklen_t addressLength_ = 0;
};

}  // namespace nsfd::daemon
