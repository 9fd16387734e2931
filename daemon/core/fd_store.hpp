// SPDX-License-Identifier: LGPL-2.1-or-later
// systemd's fd store: each tracked pidfd is kept there, so that a restarted
// nsfdd gets every tracked process back (sd_notify FDSTORE=1, sd_listen_fds).
//
// A pidfd is stored as FDNAME=<id in hex>, FDPOLL=0 (an exited process must
// stay, to give its exit status after a restart). What the kernel cannot say
// after a restart, the pid of a reaped process and who tracks it, is kept in
// one memfd stored as FDNAME=state: a table of fixed-size records, one slot per
// tracker of a process (a process tracked by two uids has two). Whose quota each
// tracking counts against (Caller::account()) is kept beside it, slot for slot, in
// FDNAME=accounts: a file of its own, so that the state table stays as older
// nsfdd wrote and read it (an older nsfdd given this store drops "accounts" as an
// unknown fd, and a newer one given an older store counts each tracking as its
// uid's, as the older did). Names are short because systemd
// hands all of them to the next nsfdd in one LISTEN_FDNAMES variable, and execve(2) refuses a
// variable over 128 KiB: the store says when it is full rather than let a restart fail.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "notifier.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

struct StoredProcess {
    std::uint64_t id = 0;
    pid_t pid = 0;
    std::vector<uid_t> trackers;
    // For each tracker, whose quota its tracking counts against (nullopt:
    // none, root's). From a store that did not record it (an older nsfdd's),
    // the tracker's own uid, or none for root.
    std::vector<std::optional<uid_t>> accounts;
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

    // Names of sockets a socket unit passes (FileDescriptorName=): not pidfds.
    static constexpr std::string_view kVarlinkSocketName = "varlink";

    // The fds handed over at start (LISTEN_FDS, LISTEN_FDNAMES): takes the state
    // table, keeps the sockets for takeSocket() and returns the pidfds. Call
    // once, before anything is stored.
    std::vector<RestoredPidFd> takeInherited();
    // The socket passed under `name` (kVarlinkSocketName), once; not ok() if none was.
    UniqueFd takeSocket(std::string_view name);
    // Drops a restored fd nsfdd does not keep (unknown, or not its process).
    void discard(const RestoredPidFd& restored);

    // A small file nsfdd keeps for itself across a restart (the D-Bus
    // endpoint's subscribers: "subscribers"): the one handed back at start, or
    // a new memfd stored now. Written in place, it needs no new FDSTORE. The
    // store owns it; -1 if no service manager keeps anything.
    int file(const std::string& name);

    // Slots only root may take: when other users' processes have filled the
    // rest, root still tracks.
    static constexpr std::size_t kRootReserve = 1024;

    // Whether one more process fits; for users other than root, without the
    // root's reserve.
    bool hasRoom(bool forRoot) const;
    // Keeps `tracker`'s tracking of process `id`, counted against `account`'s
    // quota (nullopt: none), and its pidfd the first time.
    void add(int pidfd, std::uint64_t id, pid_t pid, uid_t tracker, std::optional<uid_t> account);
    // Forgets one tracking; the pidfd goes with the last.
    void removeTracker(std::uint64_t id, uid_t tracker);
    // Forgets the process.
    void remove(std::uint64_t id);

    // One slot of the state table.
    struct Record;

  private:
    void createState();
    void writeRecord(std::uint32_t slot, std::uint64_t id, pid_t pid, uid_t tracker,
                     std::optional<uid_t> account = std::nullopt);
    void freeSlot(std::uint32_t slot);
    static std::string nameOf(std::uint64_t id);

    const Notifier& notifier_;
    bool active_;        // a service manager keeps what nsfdd stores
    UniqueFd state_;     // the memfd of records
    int accounts_ = -1;  // file("accounts"): the account of each slot
    std::map<std::string, UniqueFd, std::less<>> files_;              // file()
    std::map<std::string, UniqueFd, std::less<>> sockets_;            // by FileDescriptorName=
    std::map<std::pair<std::uint64_t, uid_t>, std::uint32_t> slots_;  // (id, tracker) -> slot
    std::unordered_map<std::uint64_t, std::size_t> stored_;           // id -> its slots
    std::vector<std::uint32_t> freeSlots_;
    std::uint32_t nextSlot_ = 0;
    std::size_t namesLength_ = 0;  // of LISTEN_FDNAMES, were nsfdd restarted now
};

}  // namespace nsfd::daemon
