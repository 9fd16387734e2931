// SPDX-License-Identifier: LGPL-2.1-or-later
// systemd's fd store: each tracked pidfd is kept there, so that a restarted
// nsfdd gets every tracked process back (sd_notify FDSTORE=1, sd_listen_fds).
//
// A pidfd is stored as FDNAME=<id in hex>, FDPOLL=0 (an exited process must
// stay, to give its exit status after a restart). What the kernel cannot say
// after a restart, the pid of a reaped process and who tracked it, is kept in
// one memfd stored as FDNAME=state: a table of fixed-size records, one slot per
// process. Names are short because systemd hands all of them to the next nsfdd
// in one LISTEN_FDNAMES variable, and execve(2) refuses a variable over 128 KiB:
// the store says when it is full rather than let a restart fail.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "notifier.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

struct StoredProcess {
    std::uint64_t id = 0;
    pid_t pid = 0;
    uid_t trackedBy = 0;
};

// A pidfd handed back at start, with what the state table says of it.
struct RestoredPidFd {
    UniqueFd fd;
    std::string name;
    std::optional<StoredProcess> stored;  // nullopt: not one nsfdd stored
};

class FdStore {
  public:
    // As many fds as the unit's FileDescriptorStoreMax= (systemd/nsfdd.service).
    static constexpr std::size_t kMaxFds = 16384;
    // execve(2)'s limit on one environment string (MAX_ARG_STRLEN), less "LISTEN_FDNAMES=".
    static constexpr std::size_t kMaxNamesLength = 32 * 4096 - 16;

    // Active if a service manager listens (`notifier` is active); otherwise
    // every call is a no-op and there is always room.
    explicit FdStore(const Notifier& notifier);
    FdStore(const FdStore&) = delete;
    FdStore& operator=(const FdStore&) = delete;

    // The fds handed over at start (LISTEN_FDS, LISTEN_FDNAMES): takes the state
    // table and returns the pidfds. Call once, before anything is stored.
    std::vector<RestoredPidFd> takeInherited();
    // Drops a restored fd nsfdd does not keep (unknown, or not its process).
    void discard(const RestoredPidFd& restored);

    bool hasRoom() const;
    void add(int pidfd, const StoredProcess& process);
    void remove(std::uint64_t id);

    // One slot of the state table.
    struct Record;

  private:
    void createState();
    void writeRecord(std::uint32_t slot, const StoredProcess& process);
    static std::string nameOf(std::uint64_t id);

    const Notifier& notifier_;
    bool active_;     // a service manager keeps what nsfdd stores
    UniqueFd state_;  // the memfd of records
    std::unordered_map<std::uint64_t, std::uint32_t> slots_;  // id -> slot
    std::vector<std::uint32_t> freeSlots_;
    std::uint32_t nextSlot_ = 0;
    std::size_t namesLength_ = 0;  // of LISTEN_FDNAMES, were nsfdd restarted now
};

}  // namespace nsfd::daemon
