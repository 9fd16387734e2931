// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nsfd/features.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "kernel.hpp"
#include "nsfd/info.hpp"
#include "nsfd/ns.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd {

namespace {

UniqueFd openPidFd(pid_t pid, unsigned flags) {
    return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, flags)));
}

// Exit and coredump info exist only for a reaped process: make one.
void probeExitInfo(KernelFeatures& features) {
    pid_t child = ::fork();
    if (child < 0) {
        return;
    }
    if (child == 0) {
        ::_exit(0);
    }
    UniqueFd pidfd = openPidFd(child, 0);
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
    if (!pidfd.ok()) {
        return;
    }
    Info::Raw raw{};
    raw.mask = static_cast<std::uint64_t>(InfoFlags::Exit | InfoFlags::Coredump);
    if (::ioctl(pidfd.get(), kernel::pidfdGetInfoIoctl(sizeof(raw)), &raw) == 0) {
        Info info(raw);
        features.exitInfo = info.exitStatus().has_value();
        features.coredumpInfo = hasFlag(info.mask(), InfoFlags::Coredump);
    }
}

KernelFeatures probe() {
    KernelFeatures features;
    UniqueFd self = openPidFd(::getpid(), 0);
    if (!self.ok()) {
        return features;
    }
    struct statfs fs {};
    features.pidfs = ::fstatfs(self.get(), &fs) == 0 && fs.f_type == kernel::kPidFsMagic;
    // PIDFD_THREAD is O_EXCL: older kernels reject the unknown flag with EINVAL.
    features.threadPidFd = openPidFd(static_cast<pid_t>(::gettid()), kernel::kPidFdThread).ok();

    UniqueFd ns(
        ::ioctl(self.get(), kernel::pidfdGetNamespaceIoctl(static_cast<unsigned>(NsType::Net)), 0));
    features.namespaceIoctls = ns.ok();
    if (!ns.ok()) {
        ns = UniqueFd(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    }
    std::uint64_t id = 0;
    features.namespaceId = ns.ok() && ::ioctl(ns.get(), kernel::kNsGetId, &id) == 0;

    Info::Raw raw{};
    raw.mask = static_cast<std::uint64_t>(InfoFlags::Pid);
    features.info = ::ioctl(self.get(), kernel::pidfdGetInfoIoctl(sizeof(raw)), &raw) == 0;
    if (features.info) {
        probeExitInfo(features);
    }
    return features;
}

}  // namespace

std::vector<std::string_view> KernelFeatures::names() const {
    std::vector<std::string_view> out;
    const std::pair<bool, std::string_view> all[] = {
        {pidfs, "pidfs"},
        {threadPidFd, "thread-pidfd"},
        {namespaceIoctls, "namespace-ioctls"},
        {info, "info"},
        {exitInfo, "exit-info"},
        {coredumpInfo, "coredump-info"},
        {namespaceId, "namespace-id"},
    };
    for (const auto& [supported, name] : all) {
        if (supported) {
            out.push_back(name);
        }
    }
    return out;
}

const KernelFeatures& kernelFeatures() {
    static const KernelFeatures features = probe();
    return features;
}

}  // namespace nsfd
