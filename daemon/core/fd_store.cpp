// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_store.hpp"

#include <sys/mman.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

namespace nsfd::daemon {

// One slot of the state table: one tracker of one process. id 0 marks a free
// slot (pidfs ids start at 1).
struct FdStore::Record {
    std::uint64_t id;
    std::int32_t pid;
    std::uint32_t tracker;
};
static_assert(sizeof(FdStore::Record) == 16);

namespace {

constexpr std::string_view kStateName = "state";
constexpr const char* kAccountsName = "accounts";
// The names file() hands out; kept apart from the pidfds when handed back.
constexpr std::string_view kFileNames[] = {"subscribers", kAccountsName};

// One slot of "accounts": 0 where nothing is recorded (a free slot, or one an
// older nsfdd wrote), else a tag in the upper half and the account below.
constexpr std::uint64_t kAccountOf = std::uint64_t{1} << 32;
constexpr std::uint64_t kNoAccount = std::uint64_t{2} << 32;

std::uint64_t encodeAccount(std::optional<uid_t> account) {
    return account ? kAccountOf | *account : kNoAccount;
}

bool isFileName(std::string_view name) {
    return std::find(std::begin(kFileNames), std::end(kFileNames), name) != std::end(kFileNames);
}

std::optional<std::uint64_t> parseId(std::string_view name) {
    std::uint64_t id = 0;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), id, 16);
    if (ec != std::errc() || end != name.data() + name.size() || name.empty() || id == 0) {
        return std::nullopt;
    }
    return id;
}

}  // namespace

FdStore::FdStore(const Notifier& notifier) : notifier_(notifier), active_(notifier.active()) {}

std::string FdStore::nameOf(std::uint64_t id) {
    char buf[17];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), id, 16);
    return std::string(buf, end);
}

std::vector<RestoredPidFd> FdStore::takeInherited() {
    char** names = nullptr;
    int n = sd_listen_fds_with_names(1, &names);  // unsets the variables, sets close-on-exec
    std::vector<RestoredPidFd> pidfds;
    if (n < 0) {
        spdlog::warn("Failed to take the inherited fds, ignoring: {}", std::strerror(-n));
        n = 0;
    }
    for (int i = 0; i < n; ++i) {
        UniqueFd fd(SD_LISTEN_FDS_START + i);
        std::string name = names != nullptr && names[i] != nullptr ? names[i] : "";
        if (name == kStateName && !state_.ok()) {
            state_ = std::move(fd);
        } else if (isFileName(name) && files_.count(name) == 0) {
            files_.emplace(name, std::move(fd));
        } else if (name == kVarlinkSocketName && sockets_.count(name) == 0) {
            sockets_.emplace(std::move(name), std::move(fd));
        } else {
            pidfds.push_back({std::move(fd), std::move(name), std::nullopt});
        }
    }
    if (names != nullptr) {
        for (int i = 0; names[i] != nullptr; ++i) {
            std::free(names[i]);
        }
        std::free(names);
    }

    // Whose quota each slot's tracking counts against, where recorded.
    std::vector<std::uint64_t> accounts;
    if (auto it = files_.find(kAccountsName); it != files_.end()) {
        accounts.resize(static_cast<std::size_t>(::lseek(it->second.get(), 0, SEEK_END)) /
                        sizeof(std::uint64_t));
        ssize_t got =
            ::pread(it->second.get(), accounts.data(), accounts.size() * sizeof(std::uint64_t), 0);
        accounts.resize(got < 0 ? 0 : static_cast<std::size_t>(got) / sizeof(std::uint64_t));
    }
    // The state table: which slot holds which process.
    std::unordered_map<std::uint64_t, StoredProcess> stored;
    if (state_.ok()) {
        std::vector<Record> records(static_cast<std::size_t>(::lseek(state_.get(), 0, SEEK_END)) /
                                    sizeof(Record));
        ssize_t got = ::pread(state_.get(), records.data(), records.size() * sizeof(Record), 0);
        records.resize(got < 0 ? 0 : static_cast<std::size_t>(got) / sizeof(Record));
        for (std::uint32_t slot = 0; slot < records.size(); ++slot) {
            const Record& r = records[slot];
            if (r.id != 0 && r.pid > 0 && slots_.emplace(std::pair(r.id, r.tracker), slot).second) {
                StoredProcess& process = stored[r.id];
                process.id = r.id;
                process.pid = r.pid;
                process.trackers.push_back(r.tracker);
                std::uint64_t account = slot < accounts.size() ? accounts[slot] : 0;
                if ((account & ~std::uint64_t{0xffffffff}) == kAccountOf) {
                    process.accounts.emplace_back(static_cast<uid_t>(account & 0xffffffff));
                } else if (account == kNoAccount || r.tracker == 0) {
                    process.accounts.emplace_back(std::nullopt);
                } else {
                    process.accounts.emplace_back(r.tracker);  // as an older nsfdd counted it
                }
            }
        }
        nextSlot_ = static_cast<std::uint32_t>(records.size());
    } else {
        createState();
    }
    if (active_) {
        accounts_ = file(kAccountsName);  // an older nsfdd's store has none: a new one
    }
    namesLength_ = kStateName.size() + 1;
    for (const auto& [name, fd] : files_) {
        namesLength_ += name.size() + 1;
    }
    for (const auto& [name, fd] : sockets_) {
        namesLength_ += name.size() + 1;
    }

    std::unordered_set<std::uint64_t> handedBack;
    for (RestoredPidFd& restored : pidfds) {
        std::optional<std::uint64_t> id = parseId(restored.name);
        if (auto it = id ? stored.find(*id) : stored.end(); it != stored.end()) {
            restored.stored = it->second;
            if (handedBack.insert(*id).second) {
                namesLength_ += restored.name.size() + 1;
            }
        }
    }
    // Slots whose pidfd did not come back are free again.
    std::vector<bool> inUse(nextSlot_, false);
    for (auto it = slots_.begin(); it != slots_.end();) {
        if (handedBack.count(it->first.first) != 0) {
            inUse[it->second] = true;
            ++stored_[it->first.first];
            ++it;
        } else {
            writeRecord(it->second, 0, 0, 0);
            it = slots_.erase(it);
        }
    }
    for (std::uint32_t slot = nextSlot_; slot-- > 0;) {
        if (!inUse[slot]) {
            freeSlots_.push_back(slot);  // the lowest is popped first
        }
    }
    return pidfds;
}

int FdStore::file(const std::string& name) {
    if (auto it = files_.find(name); it != files_.end()) {
        return it->second.get();
    }
    if (!active_) {
        return -1;
    }
    UniqueFd fd(::memfd_create(("nsfdd-" + name).c_str(), MFD_CLOEXEC));
    if (!fd.ok()) {
        spdlog::warn("Failed to create the file '{}' kept across a restart, ignoring: {}", name,
                     std::strerror(errno));
        return -1;
    }
    notifier_.send("FDSTORE=1\nFDPOLL=0\nFDNAME=" + name, fd.get());
    namesLength_ += name.size() + 1;
    return files_.emplace(name, std::move(fd)).first->second.get();
}

UniqueFd FdStore::takeSocket(std::string_view name) {
    auto it = sockets_.find(name);
    if (it == sockets_.end()) {
        return UniqueFd();
    }
    UniqueFd fd = std::move(it->second);
    sockets_.erase(it);
    return fd;
}

void FdStore::createState() {
    if (!active_) {
        return;
    }
    state_ = UniqueFd(::memfd_create("nsfdd-state", MFD_CLOEXEC));
    if (!state_.ok()) {
        spdlog::warn(
            "Failed to create the state table, tracked processes will not survive a "
            "restart: {}",
            std::strerror(errno));
        active_ = false;
        return;
    }
    int fd = state_.get();
    notifier_.send("FDSTORE=1\nFDPOLL=0\nFDNAME=" + std::string(kStateName), fd);
}

void FdStore::writeRecord(std::uint32_t slot, std::uint64_t id, pid_t pid, uid_t tracker,
                          std::optional<uid_t> account) {
    Record record{id, pid, tracker};
    auto offset = static_cast<off_t>(slot) * static_cast<off_t>(sizeof(Record));
    if (::pwrite(state_.get(), &record, sizeof(record), offset) != sizeof(record)) {
        spdlog::warn("Failed to write slot {} of the state table: {}", slot, std::strerror(errno));
    }
    if (accounts_ < 0) {
        return;
    }
    // Written before the pidfd is stored, and cleared with the record: a slot
    // never shows another tracking's account.
    std::uint64_t encoded = id == 0 ? 0 : encodeAccount(account);
    auto at = static_cast<off_t>(slot) * static_cast<off_t>(sizeof(encoded));
    if (::pwrite(accounts_, &encoded, sizeof(encoded), at) != sizeof(encoded)) {
        spdlog::warn("Failed to write slot {} of the accounts table: {}", slot,
                     std::strerror(errno));
    }
}

void FdStore::freeSlot(std::uint32_t slot) {
    writeRecord(slot, 0, 0, 0);
    freeSlots_.push_back(slot);
}

void FdStore::discard(const RestoredPidFd& restored) {
    if (!active_) {
        return;
    }
    if (restored.stored) {
        remove(restored.stored->id);
    } else {
        notifier_.send("FDSTOREREMOVE=1\nFDNAME=" + restored.name);
    }
}

bool FdStore::hasRoom(bool forRoot) const {
    // The longest name an id can have: 16 hex digits and a ':'.
    std::size_t reserve = forRoot ? 0 : kRootReserve;
    // Besides the pidfds the store keeps the state table and file()'s files.
    constexpr std::size_t kOwnFds = 1 + std::size(kFileNames);
    return !active_ || (stored_.size() + 1 + reserve + kOwnFds <= kMaxFds &&
                        namesLength_ + 17 * (1 + reserve) <= kMaxNamesLength);
}

void FdStore::add(int pidfd, std::uint64_t id, pid_t pid, uid_t tracker,
                  std::optional<uid_t> account) {
    if (!active_ || slots_.count({id, tracker}) != 0) {
        return;
    }
    std::uint32_t slot = nextSlot_;
    if (freeSlots_.empty()) {
        ++nextSlot_;
    } else {
        slot = freeSlots_.back();
        freeSlots_.pop_back();
    }
    writeRecord(slot, id, pid, tracker, account);
    slots_[{id, tracker}] = slot;
    if (stored_[id]++ == 0) {
        std::string name = nameOf(id);
        namesLength_ += name.size() + 1;
        notifier_.send("FDSTORE=1\nFDPOLL=0\nFDNAME=" + name, pidfd);
    }
}

void FdStore::removeTracker(std::uint64_t id, uid_t tracker) {
    auto it = slots_.find({id, tracker});
    if (!active_ || it == slots_.end()) {
        return;
    }
    freeSlot(it->second);
    slots_.erase(it);
    if (--stored_[id] == 0) {
        stored_.erase(id);
        std::string name = nameOf(id);
        notifier_.send("FDSTOREREMOVE=1\nFDNAME=" + name);
        namesLength_ -= name.size() + 1;
    }
}

void FdStore::remove(std::uint64_t id) {
    if (!active_) {
        return;
    }
    auto first = slots_.lower_bound({id, 0});
    std::vector<uid_t> trackers;
    for (auto it = first; it != slots_.end() && it->first.first == id; ++it) {
        trackers.push_back(it->first.second);
    }
    for (uid_t tracker : trackers) {
        removeTracker(id, tracker);
    }
}

}  // namespace nsfd::daemon
