// SPDX-License-Identifier: LGPL-2.1-or-later
// The limits of one brokered run (Spawn), written once: nsfd-run@.service
// says TasksMax=512 and MemoryMax=2G (it names this file), and a helper that
// nsfdd started by hand writes the same numbers into the run's own cgroup
// (run_cgroup.hpp, in the helper).
#pragma once

#include <cstdint>

namespace nsfd::helper {

// Tasks (processes and threads) in a run's cgroup, the command included: the
// fork(2) or clone(2) past it fails with EAGAIN. cgroup pids.max (v1 and v2).
inline constexpr std::uint64_t kRunTasksMax = 512;
// Memory charged to a run's cgroup, in bytes (2 GiB): past it the kernel
// reclaims, then OOM-kills in that cgroup only. cgroup v2 memory.max, v1
// memory.limit_in_bytes.
inline constexpr std::uint64_t kRunMemoryMaxBytes = std::uint64_t{2} << 30;

// The directory, below the helper's own cgroup in each hierarchy, that holds
// one cgroup per run by hand, each named kRunCgroupPrefix + the helper's pid.
inline constexpr const char* kRunsCgroup = "nsfd-runs";
inline constexpr const char* kRunCgroupPrefix = "run-";

}  // namespace nsfd::helper
