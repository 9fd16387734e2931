// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace nsfd {

struct Credentials {
    uid_t ruid, euid, suid, fsuid;
    gid_t rgid, egid, sgid, fsgid;

    friend bool operator==(const Credentials&, const Credentials&) = default;
};

// What PIDFD_GET_INFO may return; ask for a set with operator|.
enum class InfoFlags : std::uint64_t {
    Pid = 1U << 0,          // pid, thread-group id, parent pid
    Credentials = 1U << 1,  // the eight ids
    CgroupId = 1U << 2,
    Exit = 1U << 3,      // wait(2) status; only once the process has been reaped
    Coredump = 1U << 4,  // coredump mask (6.16+)
    Default = Pid | Credentials | CgroupId | Exit,
};

constexpr InfoFlags operator|(InfoFlags a, InfoFlags b) noexcept {
    return static_cast<InfoFlags>(static_cast<std::uint64_t>(a) | static_cast<std::uint64_t>(b));
}
constexpr bool hasFlag(InfoFlags set, InfoFlags flag) noexcept {
    return (static_cast<std::uint64_t>(set) & static_cast<std::uint64_t>(flag)) != 0;
}

// The kernel's answer to PIDFD_GET_INFO. Each accessor is empty unless the
// kernel reported that field (its result mask), so an old kernel or a process
// that has not been reaped yet never yields a made-up value.
class Info {
  public:
    // The layout of struct pidfd_info (linux/pidfd.h, 6.13+; coredump fields 6.16+).
    struct Raw {
        std::uint64_t mask;
        std::uint64_t cgroupid;
        std::uint32_t pid, tgid, ppid;
        std::uint32_t ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
        std::int32_t exit_code;
        std::uint32_t coredump_mask;
        std::uint32_t coredump_signal;
    };

    Info() noexcept : raw_{} {}
    explicit Info(const Raw& raw) noexcept : raw_(raw) {}

    // Pids as seen from the caller's pid namespace.
    std::optional<pid_t> pid() const noexcept;
    std::optional<pid_t> threadGroupId() const noexcept;
    // 0 for a process whose parent is outside the caller's pid namespace.
    std::optional<pid_t> parentPid() const noexcept;
    std::optional<std::uint64_t> cgroupId() const noexcept;
    std::optional<Credentials> credentials() const noexcept;
    // The wait(2) status (use WIFEXITED() and friends); present only after reap.
    std::optional<int> exitStatus() const noexcept;
    std::optional<std::uint32_t> coredumpMask() const noexcept;

    InfoFlags mask() const noexcept { return static_cast<InfoFlags>(raw_.mask); }
    const Raw& raw() const noexcept { return raw_; }

  private:
    bool has(InfoFlags flag) const noexcept { return hasFlag(mask(), flag); }

    Raw raw_;
};

}  // namespace nsfd
