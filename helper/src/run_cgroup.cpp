// SPDX-License-Identifier: LGPL-2.1-or-later
// A run's cgroup by hand (run_cgroup.hpp), made with the cgroup filesystem
// directly: mkdirat(2) and writes relative to directory fds, all O_CLOEXEC.
// Follows the kernel's Documentation/admin-guide/cgroup-v2.rst (controllers,
// subtree_control, the "no internal processes" rule) and cgroup-v1/pids.rst,
// cgroup-v1/memory.rst for the v1 files.
#include "run_cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string_view>
#include <utility>

#include "nsfd-helper/run_limits.hpp"

namespace nsfd::helper {

namespace {

// The controllers a run is limited by, and the file of each limit.
struct Controller {
    const char* name;
    const char* what;  // for the warning line
    const char* v1File;
    const char* v2File;
    std::uint64_t limit;
};
constexpr Controller kControllers[] = {
    {"pids", "task limit", "pids.max", "pids.max", kRunTasksMax},
    {"memory", "memory limit", "memory.limit_in_bytes", "memory.max", kRunMemoryMaxBytes},
};

// Whether `word` is one of the `separator`-separated items of `list`.
bool hasWord(std::string_view list, std::string_view word, char separator) {
    for (;;) {
        std::size_t end = list.find(separator);
        if (list.substr(0, end) == word) {
            return true;
        }
        if (end == std::string_view::npos) {
            return false;
        }
        list.remove_prefix(end + 1);
    }
}

// A cgroup filesystem mounted here: its type, mount point, the cgroup path its
// root shows, and (v1) its super options, which name its controllers.
struct Mount {
    bool v2 = false;
    std::string point, root, options;
};

std::vector<Mount> cgroupMounts() {
    std::vector<Mount> out;
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        std::size_t dash = line.find(" - ");
        if (dash == std::string::npos) {
            continue;
        }
        std::istringstream left(line.substr(0, dash)), right(line.substr(dash + 3));
        std::string id, parent, device, root, point, type, source, options;
        left >> id >> parent >> device >> root >> point;
        right >> type >> source >> options;
        if (type == "cgroup2" || type == "cgroup") {
            out.push_back({type == "cgroup2", point, root, options});
        }
    }
    return out;
}

// The directory of the helper's own cgroup in `mount`'s hierarchy, given its
// path there from /proc/self/cgroup; empty if that mount does not show it.
std::string directoryIn(const Mount& mount, const std::string& path) {
    if (mount.root == "/") {
        return mount.point + (path == "/" ? "" : path);
    }
    if (path == mount.root) {
        return mount.point;
    }
    if (path.compare(0, mount.root.size() + 1, mount.root + "/") == 0) {
        return mount.point + path.substr(mount.root.size());
    }
    return "";
}

// Where each controller can be had: the helper's own cgroup directory in a
// hierarchy, and whether that hierarchy is v2. A controller on v2 only where
// the helper's cgroup lists it in cgroup.controllers (on a hybrid host the
// unified hierarchy lists none).
struct Hierarchy {
    bool v2 = false;
    std::vector<const Controller*> controllers;
};

std::map<std::string, Hierarchy> hierarchies(std::string& missing) {
    std::vector<Mount> mounts = cgroupMounts();
    std::map<std::string, Hierarchy> out;
    std::ifstream in("/proc/self/cgroup");
    std::vector<std::pair<std::string, std::string>> lines;  // controllers, path
    for (std::string line; std::getline(in, line);) {
        std::size_t first = line.find(':');
        std::size_t second = line.find(':', first + 1);
        if (first != std::string::npos && second != std::string::npos) {
            lines.emplace_back(line.substr(first + 1, second - first - 1), line.substr(second + 1));
        }
    }
    for (const Controller& controller : kControllers) {
        std::string found;
        bool v2 = false;
        for (const auto& [names, path] : lines) {
            for (const Mount& mount : mounts) {
                bool match = names.empty() ? mount.v2
                                           : !mount.v2 && hasWord(names, controller.name, ',') &&
                                                 hasWord(mount.options, controller.name, ',');
                std::string dir = match ? directoryIn(mount, path) : "";
                if (dir.empty() || !found.empty()) {
                    continue;
                }
                if (mount.v2) {
                    std::ifstream listed(dir + "/cgroup.controllers");
                    std::string available;
                    std::getline(listed, available);
                    if (!hasWord(available, controller.name, ' ')) {
                        continue;
                    }
                }
                found = dir;
                v2 = mount.v2;
            }
        }
        if (found.empty()) {
            missing += std::string(missing.empty() ? "" : "; ") + "no " + controller.what + " (" +
                       controller.name + " controller: not available to the helper's cgroup)";
            continue;
        }
        Hierarchy& hierarchy = out[found];
        hierarchy.v2 = v2;
        hierarchy.controllers.push_back(&controller);
    }
    return out;
}

// Writes `text` to `file` relative to `dir`. 0 or errno.
int writeAt(int dir, const char* file, const std::string& text) {
    int fd = ::openat(dir, file, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    ssize_t n = ::write(fd, text.data(), text.size());
    int error = n == static_cast<ssize_t>(text.size()) ? 0 : n < 0 ? errno : EIO;
    ::close(fd);
    return error;
}

// Removes the run cgroups in `runs` whose helper is gone: one killed mid-run
// never removed its own. A cgroup still populated stays (EBUSY); a live
// helper's is never touched, so a run being set up is safe.
void removeOrphans(int runs, pid_t self) {
    int fd = ::openat(runs, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* dir = fd < 0 ? nullptr : ::fdopendir(fd);
    if (dir == nullptr) {
        if (fd >= 0) {
            ::close(fd);
        }
        return;
    }
    std::size_t prefix = std::strlen(kRunCgroupPrefix);
    while (const dirent* entry = ::readdir(dir)) {
        if (entry->d_type != DT_DIR || std::strncmp(entry->d_name, kRunCgroupPrefix, prefix) != 0) {
            continue;
        }
        char* end = nullptr;
        long pid = std::strtol(entry->d_name + prefix, &end, 10);
        if (end == entry->d_name + prefix || *end != '\0' || pid <= 0 || pid == self) {
            continue;
        }
        if (::kill(static_cast<pid_t>(pid), 0) < 0 && errno == ESRCH) {
            (void)::unlinkat(runs, entry->d_name, AT_REMOVEDIR);
        }
    }
    ::closedir(dir);
}

// An fd that closes itself: the helper links libc only, not libnsfd's UniqueFd.
struct Fd {
    int fd = -1;
    explicit Fd(int value) noexcept : fd(value) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
    int release() noexcept { return std::exchange(fd, -1); }
};

// Makes `name` in `path`'s nsfd-runs with the limits of `controllers`, and
// opens what the run needs of it. Empty on success, or what failed and why.
std::string makeRunCgroup(const std::string& path, bool v2,
                          const std::vector<const Controller*>& controllers,
                          const std::string& name, pid_t helper, int& runsOut, int& procsOut) {
    auto failed = [](const std::string& what, int error) {
        return what + ": " + std::strerror(error);
    };
    std::string enable;
    for (const Controller* controller : controllers) {
        enable += std::string(enable.empty() ? "+" : " +") + controller->name;
    }
    Fd base(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (base.fd < 0) {
        return failed("open " + path, errno);
    }
    // v2: the controllers for the helper's children. EBUSY where its cgroup
    // holds processes and is not the root (no internal processes).
    if (int error = v2 ? writeAt(base.fd, "cgroup.subtree_control", enable) : 0; error != 0) {
        return failed("enable " + enable + " in " + path + "/cgroup.subtree_control", error);
    }
    std::string runsPath = path + "/" + kRunsCgroup;
    if (::mkdirat(base.fd, kRunsCgroup, 0755) < 0 && errno != EEXIST) {
        return failed("mkdir " + runsPath, errno);
    }
    Fd runs(::openat(base.fd, kRunsCgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (runs.fd < 0) {
        return failed("open " + runsPath, errno);
    }
    if (int error = v2 ? writeAt(runs.fd, "cgroup.subtree_control", enable) : 0; error != 0) {
        return failed("enable " + enable + " in " + runsPath + "/cgroup.subtree_control", error);
    }
    removeOrphans(runs.fd, helper);
    std::string runPath = runsPath + "/" + name;
    // EEXIST: left by a dead helper of the same pid, and empty (its command
    // died with it): this run takes it over.
    if (::mkdirat(runs.fd, name.c_str(), 0755) < 0 && errno != EEXIST) {
        return failed("mkdir " + runPath, errno);
    }
    std::string failure;
    Fd run(::openat(runs.fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (run.fd < 0) {
        failure = failed("open " + runPath, errno);
    }
    for (const Controller* controller : controllers) {
        const char* file = v2 ? controller->v2File : controller->v1File;
        std::string limit = std::to_string(controller->limit);
        if (int error = failure.empty() ? writeAt(run.fd, file, limit) : 0; error != 0) {
            failure = failed("write " + limit + " to " + runPath + "/" + file, error);
        }
    }
    // Where the child writes "0" to move in. v1: `tasks`, which moves the one
    // thread it has without the global threadgroup lock that a write to
    // cgroup.procs takes for writing (an RCU grace period each time: about
    // 3 ms of every run here, figure 18). v2's cgroup.threads moves threads
    // only within a threaded subtree: cgroup.procs there.
    const char* join = v2 ? "cgroup.procs" : "tasks";
    Fd procs(failure.empty() ? ::openat(run.fd, join, O_WRONLY | O_CLOEXEC) : -1);
    if (failure.empty() && procs.fd < 0) {
        failure = failed("open " + runPath + "/" + join, errno);
    }
    if (!failure.empty()) {
        (void)::unlinkat(runs.fd, name.c_str(), AT_REMOVEDIR);
        return failure;
    }
    runsOut = runs.release();
    procsOut = procs.release();
    return "";
}

}  // namespace

RunCgroupPlacement runCgroupPlacement() noexcept {
    const char* invocation = std::getenv("INVOCATION_ID");
    const char* listenPid = std::getenv("LISTEN_PID");
    bool activated = listenPid != nullptr && std::atol(listenPid) == ::getpid();
    return activated || (invocation != nullptr && *invocation != '\0')
               ? RunCgroupPlacement::ServiceUnit
               : RunCgroupPlacement::OwnCgroup;
}

RunCgroup::RunCgroup(pid_t helper) : name_(kRunCgroupPrefix + std::to_string(helper)) {
    if (::geteuid() != 0) {
        missing_ = "no task limit and no memory limit (the helper is not root)";
        return;
    }
    for (const auto& [path, hierarchy] : hierarchies(missing_)) {
        Made made{-1, -1, path + "/" + kRunsCgroup + "/" + name_};
        std::string failure = makeRunCgroup(path, hierarchy.v2, hierarchy.controllers, name_,
                                            helper, made.runs, made.procs);
        if (failure.empty()) {
            made_.push_back(std::move(made));
            continue;
        }
        for (const Controller* controller : hierarchy.controllers) {
            missing_ += std::string(missing_.empty() ? "" : "; ") + "no " + controller->what +
                        " (Failed to " + failure + ")";
        }
    }
}

RunCgroup::~RunCgroup() {
    remove();
}

int RunCgroup::join() const noexcept {
    for (const Made& made : made_) {
        // "0": the writing thread itself, which is the whole child (v1 tasks,
        // v2 cgroup.procs).
        if (::write(made.procs, "0", 1) != 1) {
            return errno;
        }
    }
    return 0;
}

void RunCgroup::remove() noexcept {
    for (Made& made : made_) {
        ::close(made.procs);
        int error = 0;
        for (int tries = 0; tries < 100; ++tries) {
            error = ::unlinkat(made.runs, name_.c_str(), AT_REMOVEDIR) < 0 ? errno : 0;
            if (error != EBUSY) {
                break;
            }
            ::usleep(10000);
        }
        if (error != 0 && error != ENOENT) {
            (void)std::fprintf(stderr,
                               "nsfd-helper: Failed to remove cgroup %s: %s, leaving it "
                               "to the next run.\n",
                               made.path.c_str(), std::strerror(error));
        }
        ::close(made.runs);
    }
    made_.clear();
}

}  // namespace nsfd::helper
