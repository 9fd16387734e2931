// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd/pidfd.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <fstream>
#include <string>

#include "error.hpp"
#include "kernel.hpp"
#include "nsfd/features.hpp"

namespace nsfd {

namespace {

std::string ofPid(pid_t pid) {
    return " of pid " + std::to_string(pid);
}

unsigned kernelFlags(PidFdFlags flags) {
    unsigned bits = static_cast<unsigned>(flags);
    unsigned out = 0;
    if (bits & static_cast<unsigned>(PidFdFlags::NonBlock)) {
        out |= kernel::kPidFdNonBlock;
    }
    if (bits & static_cast<unsigned>(PidFdFlags::Thread)) {
        out |= kernel::kPidFdThread;
    }
    return out;
}

// Before pidfs (6.9) a pidfd is an anonymous inode named "[pidfd]".
bool isPidFd(int fd) {
    struct statfs fs {};
    if (::fstatfs(fd, &fs) < 0) {
        return false;
    }
    if (fs.f_type == kernel::kPidFsMagic) {
        return true;
    }
    char target[64] = {};
    std::string link = "/proc/self/fd/" + std::to_string(fd);
    ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
    return n > 0 && std::string_view(target, static_cast<std::size_t>(n)) == "anon_inode:[pidfd]";
}

// The "Pid:" line of a pidfd's fdinfo: the pid in our namespace, -1 once reaped,
// 0 if the process is in no namespace of ours.
pid_t pidOfPidFd(int fd) {
    // PIDFD_GET_INFO is one ioctl (6.13+); it fails once the process is reaped
    // and outside our pid namespace, where fdinfo has the answer.
    Info::Raw raw{};
    raw.mask = static_cast<std::uint64_t>(InfoFlags::Pid);
    if (::ioctl(fd, kernel::pidfdGetInfoIoctl(sizeof(raw)), &raw) == 0 &&
        (raw.mask & static_cast<std::uint64_t>(InfoFlags::Pid)) != 0) {
        return static_cast<pid_t>(raw.pid);
    }
    std::ifstream fdinfo("/proc/self/fdinfo/" + std::to_string(fd));
    std::string line;
    while (std::getline(fdinfo, line)) {
        if (line.rfind("Pid:", 0) == 0) {
            std::string_view value(line);
            value.remove_prefix(4);
            while (!value.empty() && (value.front() == '\t' || value.front() == ' ')) {
                value.remove_prefix(1);
            }
            pid_t pid = -1;
            std::from_chars(value.data(), value.data() + value.size(), pid);
            return pid;
        }
    }
    return -1;
}

}  // namespace

PidFd::PidFd(UniqueFd fd, pid_t pid) : fd_(std::move(fd)), pid_(pid) {}

PidFd::PidFd(PidFd&& other) noexcept
    : fd_(std::move(other.fd_)), pid_(other.pid_), id_(other.id_.load()) {}

PidFd& PidFd::operator=(PidFd&& other) noexcept {
    fd_ = std::move(other.fd_);
    pid_ = other.pid_;
    id_ = other.id_.load();
    return *this;
}

PidFd PidFd::open(pid_t pid, PidFdFlags flags) {
    if (pid <= 0) {
        // pidfd_open(0) would not fail the way a caller expects from a bad pid.
        detail::throwErrno(EINVAL, "Failed to open pidfd for pid " + std::to_string(pid));
    }
    // pidfd_open always sets close-on-exec.
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, kernelFlags(flags)));
    if (fd < 0) {
        detail::throwErrno(errno, "Failed to open pidfd for pid " + std::to_string(pid));
    }
    return PidFd(UniqueFd(fd), pid);
}

PidFd PidFd::self() {
    return open(::getpid());
}

PidFd PidFd::adopt(UniqueFd fd) {
    if (!isPidFd(fd.get())) {
        detail::throwErrno(EINVAL, "fd " + std::to_string(fd.get()) + " is not a pidfd");
    }
    pid_t pid = pidOfPidFd(fd.get());
    return PidFd(std::move(fd), pid);
}

std::uint64_t PidFd::id() const {
    std::uint64_t id = id_.load(std::memory_order_relaxed);
    if (id == kIdUnknown) {
        // Two threads may both look it up; they find the same answer.
        struct stat st {};
        id = kernelFeatures().pidfs && ::fstat(fd_.get(), &st) == 0 ? st.st_ino : kNoId;
        id_.store(id, std::memory_order_relaxed);
    }
    if (id == kNoId) {
        detail::throwErrno(EOPNOTSUPP, "Failed to get the pidfs id" + ofPid(pid_));
    }
    return id;
}

NsFd PidFd::namespaceFd(NsType type) const {
    // The kernel opens the namespace fd close-on-exec.
    unsigned long request = kernel::pidfdGetNamespaceIoctl(static_cast<unsigned>(type));
    int fd = ::ioctl(fd_.get(), request, 0);
    if (fd < 0) {
        detail::throwIoctlErrno(
            errno, "Failed to get " + std::string(toString(type)) + " namespace" + ofPid(pid_));
    }
    return NsFd(UniqueFd(fd), type);
}

Info PidFd::info(InfoFlags flags) const {
    Info::Raw raw{};
    raw.mask = static_cast<std::uint64_t>(flags);
    if (::ioctl(fd_.get(), kernel::pidfdGetInfoIoctl(sizeof(raw)), &raw) < 0) {
        detail::throwIoctlErrno(errno, "Failed to get info" + ofPid(pid_));
    }
    return Info(raw);
}

Credentials PidFd::credentials() const {
    std::optional<Credentials> creds = info(InfoFlags::Credentials).credentials();
    if (!creds) {
        // A reaped process answers with its exit status only.
        detail::throwErrno(ESRCH, "Failed to get credentials" + ofPid(pid_));
    }
    return *creds;
}

void PidFd::sendSignal(int signal) const {
    if (::syscall(SYS_pidfd_send_signal, fd_.get(), signal, nullptr, 0) < 0) {
        detail::throwErrno(errno, "Failed to send signal " + std::to_string(signal) + " to pid " +
                                      std::to_string(pid_));
    }
}

UniqueFd PidFd::getFd(int targetFd) const {
    // pidfd_getfd always sets close-on-exec on the new fd.
    int fd = static_cast<int>(::syscall(SYS_pidfd_getfd, fd_.get(), targetFd, 0));
    if (fd < 0) {
        detail::throwErrno(errno, "Failed to get fd " + std::to_string(targetFd) + ofPid(pid_));
    }
    return UniqueFd(fd);
}

bool PidFd::hasExited() const {
    struct pollfd pfd = {fd_.get(), POLLIN, 0};
    int n = ::poll(&pfd, 1, 0);
    if (n < 0) {
        detail::throwErrno(errno, "Failed to poll pidfd" + ofPid(pid_));
    }
    return n > 0;
}

}  // namespace nsfd
