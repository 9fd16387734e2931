// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd/ns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>

#include "error.hpp"
#include "kernel.hpp"

namespace nsfd {

namespace {

constexpr std::array<std::string_view, kNsTypeCount> kNames = {
    "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children",
    "user",   "uts",
};

constexpr std::array<int, kNsTypeCount> kCloneFlags = {
    CLONE_NEWCGROUP, CLONE_NEWIPC,  CLONE_NEWNS,   CLONE_NEWNET,  CLONE_NEWPID,
    CLONE_NEWPID,    CLONE_NEWTIME, CLONE_NEWTIME, CLONE_NEWUSER, CLONE_NEWUTS,
};

// The kind NS_GET_NSTYPE reports; it cannot tell the *_for_children ones apart.
std::optional<NsType> typeOfCloneFlag(int flag) noexcept {
    for (NsType type : allNsTypes()) {
        if (kCloneFlags[static_cast<std::size_t>(type)] == flag) {
            return type;
        }
    }
    return std::nullopt;
}

std::string describe(const NsFd& ns) {
    return std::string(toString(ns.type())) + " namespace fd " + std::to_string(ns.get());
}

}  // namespace

std::string_view toString(NsType type) noexcept {
    return kNames[static_cast<std::size_t>(type)];
}

std::optional<NsType> parseNsType(std::string_view name) noexcept {
    for (NsType type : allNsTypes()) {
        if (toString(type) == name) {
            return type;
        }
    }
    return std::nullopt;
}

int cloneFlag(NsType type) noexcept {
    return kCloneFlags[static_cast<std::size_t>(type)];
}

NsFd NsFd::current(NsType type) {
    std::string path = "/proc/self/ns/" + std::string(toString(type));
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        detail::throwErrno(errno, "Failed to open " + path);
    }
    return NsFd(UniqueFd(fd), type);
}

NsFd NsFd::adopt(UniqueFd fd) {
    int flag = ::ioctl(fd.get(), kernel::kNsGetNsType);
    std::optional<NsType> type = flag < 0 ? std::nullopt : typeOfCloneFlag(flag);
    if (!type) {
        // ENOTTY (not nsfs) or EINVAL: either way not a namespace we know.
        detail::throwErrno(EINVAL, "fd " + std::to_string(fd.get()) + " is not a namespace fd");
    }
    return NsFd(std::move(fd), *type);
}

NsFd NsFd::adopt(UniqueFd fd, NsType type) {
    int number = fd.get();
    NsFd ns = adopt(std::move(fd));
    if (cloneFlag(ns.type()) != cloneFlag(type)) {
        detail::throwErrno(EINVAL, "fd " + std::to_string(number) + " is a " +
                                       std::string(toString(ns.type())) + " namespace, not " +
                                       std::string(toString(type)));
    }
    ns.type_ = type;
    return ns;
}

std::uint64_t NsFd::id() const {
    std::uint64_t id = 0;
    if (::ioctl(fd_.get(), kernel::kNsGetId, &id) < 0) {
        detail::throwIoctlErrno(errno, "Failed to get the id of " + describe(*this));
    }
    return id;
}

ino_t NsFd::inode() const {
    struct stat st {};
    if (::fstat(fd_.get(), &st) < 0) {
        detail::throwErrno(errno, "Failed to stat " + describe(*this));
    }
    return st.st_ino;
}

uid_t NsFd::ownerUid() const {
    uid_t uid = 0;
    if (::ioctl(fd_.get(), kernel::kNsGetOwnerUid, &uid) < 0) {
        detail::throwErrno(errno, "Failed to get the owner uid of " + describe(*this));
    }
    return uid;
}

NsFd NsFd::owningUserNamespace() const {
    // nsfs opens the returned fd close-on-exec.
    int fd = ::ioctl(fd_.get(), kernel::kNsGetUserns);
    if (fd < 0) {
        detail::throwErrno(errno, "Failed to get the owning user namespace of " + describe(*this));
    }
    return NsFd(UniqueFd(fd), NsType::User);
}

NsFd NsFd::parent() const {
    int fd = ::ioctl(fd_.get(), kernel::kNsGetParent);
    if (fd < 0) {
        detail::throwErrno(errno, "Failed to get the parent of " + describe(*this));
    }
    NsType parentType = type_ == NsType::PidForChildren ? NsType::Pid : type_;
    return NsFd(UniqueFd(fd), parentType);
}

std::optional<uid_t> outermostOwnerUid(const NsFd& userNamespace) {
    // Raw ioctls: EPERM at the top is the usual end, not an error.
    int currentFd = userNamespace.get();
    UniqueFd current;  // owned once climbed to
    UniqueFd below;
    int belowFd = -1;
    // 32 levels at most (the kernel's limit on nested user namespaces).
    for (int level = 0; level <= 32; ++level) {
        int parent = ::ioctl(currentFd, kernel::kNsGetParent);
        if (parent < 0) {
            if (errno == EPERM) {
                break;
            }
            detail::throwErrno(errno, "Failed to get the parent of " + describe(userNamespace));
        }
        below = std::move(current);
        belowFd = currentFd;
        current = UniqueFd(parent);
        currentFd = parent;
    }
    if (belowFd < 0) {
        return std::nullopt;  // the caller's own
    }
    // Only a climb that ended at the caller's own namespace names its user.
    struct stat top {};
    struct stat own {};
    if (::fstat(currentFd, &top) < 0 || ::stat("/proc/self/ns/user", &own) < 0) {
        detail::throwErrno(errno, "Failed to stat " + describe(userNamespace));
    }
    if (top.st_ino != own.st_ino || top.st_dev != own.st_dev) {
        return std::nullopt;
    }
    uid_t uid = 0;
    if (::ioctl(belowFd, kernel::kNsGetOwnerUid, &uid) < 0) {
        detail::throwErrno(errno, "Failed to get the owner uid of " + describe(userNamespace));
    }
    return uid;
}

}  // namespace nsfd
