// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "nsfd/info.hpp"
#include "nsfd/ns.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd {

enum class PidFdFlags : unsigned {
    NonBlock = 1U << 0,  // PIDFD_NONBLOCK
    Thread = 1U << 1,    // PIDFD_THREAD: refer to one thread (6.9+)
};
constexpr PidFdFlags operator|(PidFdFlags a, PidFdFlags b) noexcept {
    return static_cast<PidFdFlags>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}

// A process (or thread) handle that, unlike a pid, cannot come to mean another
// process. Every failing call throws std::system_error carrying the errno in
// std::generic_category() and a message naming the operation and the pid, e.g.
// "Failed to get net namespace of pid 4711: Permission denied".
class PidFd {
  public:
    // pidfd_open(2). ESRCH if no such process; ENOENT for a thread that is not a
    // thread-group leader unless PidFdFlags::Thread is given.
    static PidFd open(pid_t pid, PidFdFlags flags = {});
    // The calling process.
    static PidFd self();
    // Takes ownership of `fd` after checking that it is a pidfd; EINVAL otherwise
    // (and `fd` is closed).
    static PidFd adopt(UniqueFd fd);

    PidFd(PidFd&& other) noexcept;
    PidFd& operator=(PidFd&& other) noexcept;
    PidFd(const PidFd&) = delete;
    PidFd& operator=(const PidFd&) = delete;
    ~PidFd() = default;

    // The pidfs inode number: unique per process for the life of the system,
    // never reused (64-bit, kernel 6.9+; operation_not_supported before).
    // Looked up (one fstat) on the first call, which open() leaves out.
    std::uint64_t id() const;
    // The pid when the handle was made, in the caller's pid namespace. Meaningful
    // as a label only: the process may since have exited and the pid been reused.
    // -1 if the process had already been reaped when adopted.
    pid_t pid() const noexcept { return pid_; }

    // PIDFD_GET_*_NAMESPACE (6.11+). EACCES unless the caller may ptrace-read the
    // process, ESRCH once it has exited, operation_not_supported where the kernel
    // lacks the ioctl or the namespace kind.
    NsFd namespaceFd(NsType type) const;
    NsFd cgroupNamespace() const { return namespaceFd(NsType::Cgroup); }
    NsFd ipcNamespace() const { return namespaceFd(NsType::Ipc); }
    NsFd mntNamespace() const { return namespaceFd(NsType::Mnt); }
    NsFd netNamespace() const { return namespaceFd(NsType::Net); }
    NsFd pidNamespace() const { return namespaceFd(NsType::Pid); }
    NsFd pidNamespaceForChildren() const { return namespaceFd(NsType::PidForChildren); }
    NsFd timeNamespace() const { return namespaceFd(NsType::Time); }
    NsFd timeNamespaceForChildren() const { return namespaceFd(NsType::TimeForChildren); }
    NsFd userNamespace() const { return namespaceFd(NsType::User); }
    NsFd utsNamespace() const { return namespaceFd(NsType::Uts); }

    // PIDFD_GET_INFO (6.13+; exit status 6.15+). ESRCH for a reaped process
    // unless InfoFlags::Exit is asked for and the kernel kept its status.
    Info info(InfoFlags flags = InfoFlags::Default) const;
    Credentials credentials() const;

    // pidfd_send_signal(2): kill(2)'s permission rule.
    void sendSignal(int signal) const;
    // pidfd_getfd(2): a close-on-exec duplicate of the process's fd `targetFd`.
    UniqueFd getFd(int targetFd) const;

    // True once the process has exited (zombie or reaped). Never blocks.
    bool hasExited() const;

    int get() const noexcept { return fd_.get(); }
    // Gives up ownership, as UniqueFd::release() does: the caller must close
    // the returned fd (or hand it to a UniqueFd). This object is empty after.
    [[nodiscard]] int release() noexcept { return fd_.release(); }

  private:
    PidFd(UniqueFd fd, pid_t pid);

    static constexpr std::uint64_t kIdUnknown = 0;      // not looked up yet
    static constexpr std::uint64_t kNoId = UINT64_MAX;  // not on pidfs (kernel < 6.9)

    UniqueFd fd_;
    pid_t pid_;
    mutable std::atomic<std::uint64_t> id_{kIdUnknown};
};

}  // namespace nsfd
