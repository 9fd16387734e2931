// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <string_view>
#include <vector>

namespace nsfd {

// What the running kernel supports, probed once (first call) and cached.
struct KernelFeatures {
    bool pidfs = false;            // pidfd inode ids (6.9)
    bool threadPidFd = false;      // PIDFD_THREAD (6.9)
    bool namespaceIoctls = false;  // PIDFD_GET_*_NAMESPACE (6.11)
    bool info = false;             // PIDFD_GET_INFO (6.13)
    bool exitInfo = false;         // PIDFD_INFO_EXIT (6.15)
    bool coredumpInfo = false;     // PIDFD_INFO_COREDUMP (6.16)
    bool namespaceId = false;      // NS_GET_ID (6.12)

    // The names of the supported features: "pidfs", "thread-pidfd",
    // "namespace-ioctls", "info", "exit-info", "coredump-info", "namespace-id".
    std::vector<std::string_view> names() const;
};

// Probes by calling the features on this process and a short-lived child it
// forks and reaps on the first call; later calls return the cached result.
const KernelFeatures& kernelFeatures();

}  // namespace nsfd
