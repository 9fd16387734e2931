// SPDX-License-Identifier: LGPL-2.1-or-later
// systemd's fd store: each tracked pidfd is kept there, so that a restarted
// nsfdd gets every tracked process back (sd_notify FDSTORE=1, sd_listen_fds).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

// The FDNAME of a tracked process: "process-ID-PID-UID" (UID: who tracked it).
// The pid is kept because the kernel forgets it once the process is reaped.
std::string fdStoreName(std::uint64_t id, pid_t pid, uid_t trackedBy);

struct StoredProcess {
    std::uint64_t id;
    pid_t pid;
    uid_t trackedBy;
};
std::optional<StoredProcess> parseFdStoreName(std::string_view name);

// No-ops unless systemd (or whoever set NOTIFY_SOCKET) listens. FDPOLL=0: an
// exited process must stay in the store, to give its exit status after a restart.
void storeFd(int fd, const StoredProcess& process);
void removeStoredFd(const StoredProcess& process);

struct InheritedFd {
    UniqueFd fd;
    std::string name;
};
// The fds handed over at start (LISTEN_FDS, LISTEN_FDNAMES), close-on-exec.
std::vector<InheritedFd> takeInheritedFds();

}  // namespace nsfd::daemon
