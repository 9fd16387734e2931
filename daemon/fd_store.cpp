// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_store.hpp"

#include <systemd/sd-daemon.h>

#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdlib>
#include <cstring>

namespace nsfd::daemon {

namespace {

constexpr std::string_view kPrefix = "process-";

template <typename T>
bool parseNumber(std::string_view text, T& out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

}  // namespace

std::string fdStoreName(std::uint64_t id, pid_t pid, uid_t trackedBy) {
    return std::string(kPrefix) + std::to_string(id) + "-" + std::to_string(pid) + "-" +
           std::to_string(trackedBy);
}

std::optional<StoredProcess> parseFdStoreName(std::string_view name) {
    if (name.substr(0, kPrefix.size()) != kPrefix) {
        return std::nullopt;
    }
    name.remove_prefix(kPrefix.size());
    std::size_t first = name.find('-');
    std::size_t second = first == std::string_view::npos ? first : name.find('-', first + 1);
    StoredProcess stored{};
    if (second == std::string_view::npos || !parseNumber(name.substr(0, first), stored.id) ||
        !parseNumber(name.substr(first + 1, second - first - 1), stored.pid) ||
        !parseNumber(name.substr(second + 1), stored.trackedBy) || stored.pid <= 0) {
        return std::nullopt;
    }
    return stored;
}

void storeFd(int fd, const StoredProcess& process) {
    std::string message =
        "FDSTORE=1\nFDPOLL=0\nFDNAME=" + fdStoreName(process.id, process.pid, process.trackedBy);
    int r = sd_pid_notify_with_fds(0, 0, message.c_str(), &fd, 1);
    if (r < 0) {
        spdlog::warn("Failed to store the pidfd of process {} with systemd, ignoring: {}",
                     process.id, std::strerror(-r));
    }
}

void removeStoredFd(const StoredProcess& process) {
    std::string message =
        "FDSTOREREMOVE=1\nFDNAME=" + fdStoreName(process.id, process.pid, process.trackedBy);
    int r = sd_notify(0, message.c_str());
    if (r < 0) {
        spdlog::warn("Failed to remove the pidfd of process {} from systemd's store, ignoring: {}",
                     process.id, std::strerror(-r));
    }
}

std::vector<InheritedFd> takeInheritedFds() {
    char** names = nullptr;
    int n = sd_listen_fds_with_names(1, &names);  // unsets the variables, sets close-on-exec
    std::vector<InheritedFd> out;
    if (n < 0) {
        spdlog::warn("Failed to take the inherited fds, ignoring: {}", std::strerror(-n));
        return out;
    }
    for (int i = 0; i < n; ++i) {
        out.push_back({UniqueFd(SD_LISTEN_FDS_START + i), names && names[i] ? names[i] : ""});
    }
    if (names != nullptr) {
        for (int i = 0; names[i] != nullptr; ++i) {
            std::free(names[i]);
        }
        std::free(names);
    }
    return out;
}

}  // namespace nsfd::daemon
