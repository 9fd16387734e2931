// SPDX-License-Identifier: LGPL-2.1-or-later
// Targets as users name them: a container by (a prefix of) its id, a cgroup, a
// systemd unit, a machine, a pid while it has a given pidfs id. Each resolves
// to a pidfd of one process, opened first and checked after (its cgroup, from
// PIDFD_GET_INFO, or its id): a container that went away or a cgroup whose
// process changed gives NoSuchProcess, never another process. No IPC: systemd
// is asked through a UnitDirectory that an endpoint provides.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nsfd/pidfd.hpp"

namespace nsfd::daemon {

enum class SelectorKind {
    Container,  // container:ID, ID a prefix of a 64-hex container id
    Cgroup,     // cgroup:PATH, PATH from the cgroup2 root
    Unit,       // unit:NAME, a systemd unit
    Machine,    // machine:NAME, a systemd-machined machine
    PidWithId,  // PID:ID, the process with that pid while its pidfs id is ID
};

struct Selector {
    SelectorKind kind = SelectorKind::Container;
    std::string value;  // the id prefix, path or name
    pid_t pid = 0;      // PidWithId
    std::uint64_t id = 0;
    std::string text;  // as given, for messages
};

// Whether `text` is written as a selector (has one of the prefixes above, or is
// PID:ID); a plain pid or "id:N" is not.
bool looksLikeSelector(std::string_view text) noexcept;
// Reads a selector. Throws ServiceError(InvalidArgs) naming what was expected:
// container ids in lower-case hex, 1 to 64 characters; a cgroup path absolute,
// with no "." or ".." component; unit and machine names non-empty, printable,
// without "/"; PID:ID in canonical decimal.
Selector parseSelector(std::string_view text);

// What systemd says, asked by an endpoint that can (over D-Bus).
class UnitDirectory {
  public:
    struct Unit {
        pid_t mainPid = 0;         // 0: none (MainPID of a scope, say)
        std::string controlGroup;  // from the cgroup2 root; empty if it has none
    };
    virtual ~UnitDirectory() = default;
    // systemd's MainPID and ControlGroup of a loaded, active unit; nullopt if
    // there is none by that name. Throws ServiceError (NotSupported: systemd
    // cannot be asked).
    virtual std::optional<Unit> unit(const std::string& name) = 0;
    // machined's Leader of a machine and the ControlGroup of its unit; nullopt
    // if there is none by that name. Throws as unit().
    virtual std::optional<Unit> machine(const std::string& name) = 0;
};

// A cgroup directory whose name says a runtime made it for a container.
struct ContainerCgroup {
    std::string id;    // 64 hex characters
    std::string path;  // from the cgroup2 root, "/system.slice/docker-ID.scope"
};

// The mount point of the cgroup2 hierarchy in `mountinfo` (proc(5)'s format):
// /sys/fs/cgroup on a pure v2 host, /sys/fs/cgroup/unified on a hybrid one.
// Throws ServiceError(NotSupported) if there is none.
std::string findCgroup2Mount(const std::string& mountinfo = "/proc/self/mountinfo");

// The container id a runtime wrote into a cgroup's name, if it did:
// docker-ID.scope, libpod-ID.scope, cri-containerd-ID.scope, crio-ID.scope
// (systemd driver), ID and libpod-ID (cgroupfs driver: /docker/ID,
// /kubepods/<qos>/pod<UID>/ID, /libpod_parent/libpod-ID).
std::optional<std::string> containerIdOfCgroupName(std::string_view name);

class Resolver {
  public:
    // `cgroupRoot`: the cgroup2 mount; empty: found from /proc/self/mountinfo
    // at first use.
    explicit Resolver(std::string cgroupRoot = {}) : cgroupRoot_(std::move(cgroupRoot)) {}

    // Not owned; nullptr (the default): unit: and machine: answer NotSupported.
    void setUnitDirectory(UnitDirectory* directory) noexcept { units_ = directory; }

    // Whether the caller may see a process: when a container prefix matches
    // several containers, those whose process it may not see do not count.
    using Visible = std::function<bool(const PidFd&)>;

    // The process `selector` names, for every kind but PidWithId (which needs
    // the caller's pid namespace: Manager does it). Throws ServiceError:
    // NoSuchProcess (nothing matches, the cgroup has no process, it changed
    // while looking), InvalidArgs (an ambiguous container prefix, naming each
    // match by its 12-character short id), NotSupported (no cgroup2, no
    // systemd to ask).
    PidFd resolve(const Selector& selector, const Visible& visible);

    // Every container cgroup whose id starts with `prefix`, each id once.
    std::vector<ContainerCgroup> findContainers(std::string_view prefix);
    // The main process of the cgroup at `path` (from the cgroup2 root) and the
    // cgroups below it: the one whose parent is outside them, the oldest if
    // several are (docker exec's processes are too). Checked by its pidfd's
    // cgroup id after opening. NoSuchProcess if there is none.
    PidFd mainProcessOf(const std::string& path);
    const std::string& cgroupRoot();

  private:
    PidFd containerProcess(const Selector& selector, const Visible& visible);
    PidFd unitProcess(const Selector& selector);

    std::string cgroupRoot_;
    UnitDirectory* units_ = nullptr;
};

}  // namespace nsfd::daemon
