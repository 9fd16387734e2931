// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd.conf(5): limits and the administrator's grants.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "nsfd/ns.hpp"

namespace nsfd::daemon {

inline constexpr const char* kDefaultConfigPath = "/etc/nsfd/nsfdd.conf";

// What one [[grant]] table gives to a user or the members of a group, on top
// of the kernel's own rule.
struct Grant {
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    std::string subject;          // "user NAME" or "group NAME", for logs
    std::set<NsType> namespaces;  // fds of these types of any process
    bool info = false;            // info, ids, listing and tracking of any process
    bool pidfd = false;           // GetPidFd of any process
    // Applies to the user's (or group's) callers in a user namespace of their
    // own too (rootless containers, flatpak and bwrap sandboxes); without it,
    // only to those in nsfdd's user namespace.
    bool sandboxed = false;
    std::set<int> sockets;   // OpenSocket of these families (AF_*) in any process's network
    std::set<NsType> enter;  // Spawn in these namespaces (net, uts, ipc) of any process
};

struct Config {
    unsigned trackedPerUser = 1024;
    std::chrono::seconds retention{60};
    std::vector<Grant> grants;
    // Ask polkit (after the kernel rule and the grants), and how long to wait
    // for its answer before the call is denied.
    bool polkit = true;
    std::chrono::milliseconds polkitTimeout{20'000};
    std::string source;  // the file it came from, "" for built-in defaults
};

// "FILE:LINE: reason" (line omitted when there is none).
class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Parses TOML `text` as if read from `path`. Throws ConfigError.
Config parseConfig(std::string_view text, const std::string& path);

// Reads `path`. A missing file gives the defaults when `mustExist` is false.
Config loadConfig(const std::string& path, bool mustExist);

}  // namespace nsfd::daemon
