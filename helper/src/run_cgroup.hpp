// SPDX-License-Identifier: LGPL-2.1-or-later
// The cgroup of one brokered run when nsfdd started the helper by hand (no
// systemd unit around it): internal to the helper.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace nsfd::helper {

// Who gives a run its cgroup and limits (run_limits.hpp).
enum class RunCgroupPlacement {
    // systemd started this helper for one connection (nsfd-run@.service:
    // LISTEN_PID is ours, or $INVOCATION_ID is set): that unit is the run's
    // cgroup, TasksMax= and MemoryMax= its limits; the helper makes none.
    ServiceUnit,
    // nsfdd started it (by hand, with an empty environment): the helper makes
    // one cgroup for the run below its own, in each hierarchy that has the
    // pids or memory controller.
    OwnCgroup,
};
RunCgroupPlacement runCgroupPlacement() noexcept;

// The run's cgroup, one directory per hierarchy that holds the pids or memory
// controller (one on cgroup v2, two on a hybrid v1 host): `nsfd-runs/run-PID`
// below the helper's own cgroup there (/proc/self/cgroup), PID the helper's,
// with pids.max and the memory limit written before the command is forked.
//
// Below its own cgroup, not at the root: the run stays inside whatever
// encloses nsfdd (a container's or a supervisor's cgroup and its limits), and
// the helper writes only where it already lives. On cgroup v2 that works only
// where the helper's cgroup may enable controllers for its children while it
// holds processes, which the "no internal processes" rule allows the root
// cgroup alone (a host without systemd); elsewhere the run has no limits and
// says so (missing()). Never a foreign cgroup at the root of a tree that
// systemd manages: run nsfdd under its units there (nsfd-run@.service).
class RunCgroup {
  public:
    // Makes the run's cgroups for a helper of pid `helper`, and removes those
    // of helpers that died (killed mid-run: nobody removed theirs) and are
    // empty. Never throws and never fails the run: what could not be made is
    // described by missing().
    explicit RunCgroup(pid_t helper);
    // remove().
    ~RunCgroup();
    RunCgroup(const RunCgroup&) = delete;
    RunCgroup& operator=(const RunCgroup&) = delete;

    // In the forked child, still root, before it becomes the caller: moves the
    // calling process, which must have one thread, into each of the run's
    // cgroups. Returns 0, or the errno of the write (v1 `tasks`, v2
    // cgroup.procs) that failed.
    int join() const noexcept;
    // After everything in the run is dead and reaped: rmdir(2) of each of the
    // run's cgroups, retried for up to a second while the kernel still counts
    // an exiting task in it (EBUSY). What stays is removed by the next run.
    void remove() noexcept;

    // Empty when the run has both limits; else which limit it lacks and why,
    // for the one warning line the helper writes.
    const std::string& missing() const noexcept { return missing_; }

  private:
    struct Made {
        int runs = -1;   // the nsfd-runs directory: the run's cgroup is removed relative to it
        int procs = -1;  // the run's v1 tasks or v2 cgroup.procs, opened for writing
        std::string path;
    };

    std::vector<Made> made_;
    std::string name_;
    std::string missing_;
};

}  // namespace nsfd::helper
