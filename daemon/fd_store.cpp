// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_store.hpp"

#include <sys/mman.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

namespace nsfd::daemon {

// One slot of the state table; id 0 marks a free slot (pidfs ids start at 1).
struct FdStore::Record {
    std::uint64_t id;
    std::int32_t pid;
    std::uint32_t trackedBy;
};
static_assert(sizeof(FdStore::Record) == 16);

namespace {

constexpr std::string_view kStateName = "state";

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

    // The state table: which slot holds which process.
    std::unordered_map<std::uint64_t, StoredProcess> stored;
    if (state_.ok()) {
        std::vector<Record> records(static_cast<std::size_t>(::lseek(state_.get(), 0, SEEK_END)) /
                                    sizeof(Record));
        ssize_t got = ::pread(state_.get(), records.data(), records.size() * sizeof(Record), 0);
        records.resize(got < 0 ? 0 : static_cast<std::size_t>(got) / sizeof(Record));
        for (std::uint32_t slot = 0; slot < records.size(); ++slot) {
            if (records[slot].id != 0 && records[slot].pid > 0) {
                stored[records[slot].id] = {records[slot].id, records[slot].pid,
                                            records[slot].trackedBy};
                slots_[records[slot].id] = slot;
            }
        }
        nextSlot_ = static_cast<std::uint32_t>(records.size());
    } else {
        createState();
    }
    namesLength_ = kStateName.size() + 1;

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
        if (handedBack.count(it->first) != 0) {
            inUse[it->second] = true;
            ++it;
        } else {
            writeRecord(it->second, {});
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

void FdStore::writeRecord(std::uint32_t slot, const StoredProcess& process) {
    Record record{process.id, process.pid, process.trackedBy};
    auto offset = static_cast<off_t>(slot) * static_cast<off_t>(sizeof(Record));
    if (::pwrite(state_.get(), &record, sizeof(record), offset) != sizeof(record)) {
        spdlog::warn("Failed to write slot {} of the state table: {}", slot, std::strerror(errno));
    }
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

bool FdStore::hasRoom() const {
    // The longest name an id can have: 16 hex digits and a ':'.
    return !active_ || (slots_.size() + 1 < kMaxFds && namesLength_ + 17 <= kMaxNamesLength);
}

void FdStore::add(int pidfd, const StoredProcess& process) {
    if (!active_ || slots_.count(process.id) != 0) {
        return;
    }
    std::uint32_t slot = nextSlot_;
    if (freeSlots_.empty()) {
        ++nextSlot_;
    } else {
        slot = freeSlots_.back();
        freeSlots_.pop_back();
    }
    writeRecord(slot, process);
    slots_[process.id] = slot;
    std::string name = nameOf(process.id);
    namesLength_ += name.size() + 1;
    notifier_.send("FDSTORE=1\nFDPOLL=0\nFDNAME=" + name, pidfd);
}

void FdStore::remove(std::uint64_t id) {
    auto it = slots_.find(id);
    if (!active_ || it == slots_.end()) {
        return;
    }
    std::string name = nameOf(id);
    notifier_.send("FDSTOREREMOVE=1\nFDNAME=" + name);
    writeRecord(it->second, {});
    freeSlots_.push_back(it->second);
    slots_.erase(it);
    namesLength_ -= name.size() + 1;
}

}  // namespace nsfd::daemon
