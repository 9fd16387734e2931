// SPDX-License-Identifier: LGPL-2.1-or-later
// Kernel ABI that Debian 12's 6.1 headers lack. Values from linux/pidfd.h,
// linux/nsfs.h and linux/magic.h of 6.18.
#pragma once

#include <linux/ioctl.h>
#include <sys/syscall.h>

#include <cstdint>

namespace nsfd::kernel {

inline constexpr unsigned kPidFsIoctlMagic = 0xFF;

// PIDFD_GET_<KIND>_NAMESPACE = _IO(0xFF, n), n from 1 (cgroup) to 10 (uts),
// in the same order as nsfd::NsType.
constexpr unsigned long pidfdGetNamespaceIoctl(unsigned index) {
    return _IO(0xFF, index + 1);
}

// PIDFD_GET_INFO encodes the size of the struct the caller passes.
constexpr unsigned long pidfdGetInfoIoctl(unsigned long size) {
    return _IOC(_IOC_READ | _IOC_WRITE, kPidFsIoctlMagic, 11, size);
}
inline constexpr unsigned long kPidFdInfoSizeVer0 = 64;

inline constexpr unsigned long kNsGetUserns = _IO(0xb7, 0x1);
inline constexpr unsigned long kNsGetParent = _IO(0xb7, 0x2);
inline constexpr unsigned long kNsGetNsType = _IO(0xb7, 0x3);
inline constexpr unsigned long kNsGetOwnerUid = _IO(0xb7, 0x4);
inline constexpr unsigned long kNsGetId = _IOR(0xb7, 13, std::uint64_t);

inline constexpr long kPidFsMagic = 0x50494446;

inline constexpr unsigned kPidFdNonBlock = 04000;  // O_NONBLOCK
inline constexpr unsigned kPidFdThread = 0200;     // O_EXCL

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

}  // namespace nsfd::kernel
