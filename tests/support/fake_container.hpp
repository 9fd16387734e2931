// SPDX-License-Identifier: LGPL-2.1-or-later
// Containers made by hand the way runtimes make them: a cgroup named as the
// runtime names it, in the cgroup2 hierarchy, holding a process in net and uts
// namespaces of its own (the container's pid 1) and a child of that process.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "child.hpp"

namespace nsfd::test {

// The cgroup2 mount point, from /proc/self/mountinfo ("" if none).
std::string cgroup2Root();
// A container id: 64 lower-case hex digits starting with `prefix`, the rest random.
std::string makeContainerId(std::string_view prefix = {});

class FakeContainer {
  public:
    // `path` from the cgroup2 root ("/nsfd-test-X/system.slice/docker-ID.scope");
    // the directories on it that do not exist yet are made, and removed by
    // the destructor. Throws std::system_error.
    FakeContainer(std::string path, const std::string& hostname);
    FakeContainer(const FakeContainer&) = delete;
    FakeContainer& operator=(const FakeContainer&) = delete;
    // Kills the child (its parent reaps it), releases and reaps the main
    // process, removes the cgroups it made.
    ~FakeContainer();

    pid_t pid() const noexcept { return main_->pid(); }
    pid_t childPid() const noexcept { return child_; }
    const std::string& path() const noexcept { return path_; }

  private:
    void cleanUp() noexcept;

    std::string path_;
    std::vector<std::string> made_;  // absolute, outermost first
    std::optional<Child> main_;
    pid_t child_ = 0;
};

}  // namespace nsfd::test
