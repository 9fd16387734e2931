// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "nsfd/unique_fd.hpp"

namespace nsfd {

// The namespace kinds a process has, as listed in /proc/PID/ns/.
enum class NsType {
    Cgroup,
    Ipc,
    Mnt,
    Net,
    Pid,
    PidForChildren,
    Time,
    TimeForChildren,
    User,
    Uts,
};

inline constexpr std::size_t kNsTypeCount = 10;

inline constexpr std::array<NsType, kNsTypeCount> kAllNsTypes = {
    NsType::Cgroup, NsType::Ipc,
    NsType::Mnt,    NsType::Net,
    NsType::Pid,    NsType::PidForChildren,
    NsType::Time,   NsType::TimeForChildren,
    NsType::User,   NsType::Uts,
};

// Every NsType in declaration order.
constexpr const std::array<NsType, kNsTypeCount>& allNsTypes() noexcept {
    return kAllNsTypes;
}

// The /proc/PID/ns/ name: "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children",
// "time", "time_for_children", "user", "uts".
std::string_view toString(NsType type) noexcept;

// The inverse of toString(); std::nullopt for anything else (case-sensitive).
std::optional<NsType> parseNsType(std::string_view name) noexcept;

// The CLONE_NEW* flag of the namespace kind, as setns(2) and unshare(2) take it.
// PidForChildren and TimeForChildren give the flag of their kind.
int cloneFlag(NsType type) noexcept;

// An open namespace file (nsfs). Holding it keeps the namespace alive.
class NsFd {
  public:
    // The namespace of the calling process, from /proc/self/ns/.
    static NsFd current(NsType type);

    // Takes ownership of `fd` after checking with NS_GET_NSTYPE that it is a
    // namespace fd. Throws std::system_error(EINVAL) if it is not; `fd` is then closed.
    // The kernel does not tell "pid" from "pid_for_children" (nor the time pair):
    // use the overload to keep the caller's knowledge.
    static NsFd adopt(UniqueFd fd);
    // As above, and checks that the namespace is of kind `type`.
    static NsFd adopt(UniqueFd fd, NsType type);

    NsType type() const noexcept { return type_; }

    // NS_GET_ID: a 64-bit id that is never reused while the system runs, unlike
    // the inode number. std::errc::operation_not_supported on kernels without it.
    std::uint64_t id() const;

    // The nsfs inode number. Reused as soon as the namespace is freed: not an identity.
    ino_t inode() const;

    // The uid that created a user namespace (NS_GET_OWNER_UID). EINVAL for other kinds.
    uid_t ownerUid() const;

    // The user namespace that owns this namespace (NS_GET_USERNS).
    NsFd owningUserNamespace() const;

    // The parent of a pid or user namespace (NS_GET_PARENT). EPERM at the
    // caller's own root, EINVAL for other kinds.
    NsFd parent() const;

    int get() const noexcept { return fd_.get(); }
    // Gives up ownership, as UniqueFd::release() does: the caller must close
    // the returned fd (or hand it to a UniqueFd). This object is empty after.
    [[nodiscard]] int release() noexcept { return fd_.release(); }

  private:
    friend class PidFd;  // builds NsFds from fds the kernel vouches for
    NsFd(UniqueFd fd, NsType type) noexcept : fd_(std::move(fd)), type_(type) {}

    UniqueFd fd_;
    NsType type_;
};

// Whom the uids of user namespace `userNamespace` belong to, as the calling
// process's user namespace sees it: the owner (NS_GET_OWNER_UID) of the
// outermost user namespace on the way up (NS_GET_PARENT) from it to the
// caller's own. Every uid a user maps into a namespace of its own (a rootless
// container's subordinate uids) belongs to that user. nullopt if
// `userNamespace` is the caller's own or not below it (the kernel lets a
// process climb only up to its own: EPERM). Throws std::system_error: not a
// user namespace (EINVAL), a kernel without the ioctls (ENOTTY).
std::optional<uid_t> outermostOwnerUid(const NsFd& userNamespace);

}  // namespace nsfd
