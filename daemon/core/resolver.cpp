// SPDX-License-Identifier: LGPL-2.1-or-later
#include "resolver.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <system_error>

#include "errors.hpp"
#include "nsfd/decimal.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::daemon {

namespace {

constexpr std::string_view kContainer = "container:";
constexpr std::string_view kCgroup = "cgroup:";
constexpr std::string_view kUnit = "unit:";
constexpr std::string_view kMachine = "machine:";
constexpr std::size_t kContainerIdLength = 64;
constexpr std::size_t kShortIdLength = 12;  // docker ps's
// Bounds on a walk of the cgroup tree: systemd's is a few levels deep; a
// container's own nested cgroups are not walked.
constexpr int kMaxDepth = 16;
constexpr std::size_t kMaxCgroups = 100000;

bool startsWith(std::string_view text, std::string_view prefix) noexcept {
    return text.substr(0, prefix.size()) == prefix;
}

bool isHex(std::string_view text) noexcept {
    return std::all_of(text.begin(), text.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool isDigits(std::string_view text) noexcept {
    return !text.empty() &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

[[noreturn]] void invalid(std::string_view text, std::string_view expected) {
    throw ServiceError(ErrorKind::InvalidArgs, "Invalid target '" + std::string(text) +
                                                   "': expected " + std::string(expected));
}

// What every resolution that finds nothing says, and what a caller that may
// not see the process it found is told: the same words.
[[noreturn]] void noSuchProcess(const Selector& selector, std::string_view why = {}) {
    throw ServiceError(ErrorKind::NoSuchProcess,
                       "No such process: " + selector.text +
                           (why.empty() ? std::string() : " (" + std::string(why) + ")"));
}

// A unit or machine name: printable ASCII, no "/", as systemd allows them.
bool isName(std::string_view name) noexcept {
    return !name.empty() && name.size() <= 255 &&
           std::all_of(name.begin(), name.end(), [](char c) { return c > ' ' && c < 127; }) &&
           name.find('/') == std::string_view::npos;
}

bool isCgroupPath(std::string_view path) noexcept {
    if (path.empty() || path[0] != '/' || path.size() > PATH_MAX) {
        return false;
    }
    if (path == "/") {
        return true;
    }
    std::string_view rest = path.substr(1);
    while (true) {
        std::size_t slash = rest.find('/');
        std::string_view part = rest.substr(0, slash);
        if (part.empty() || part == "." || part == ".." ||
            std::any_of(part.begin(), part.end(), [](char c) { return c < ' ' || c == 127; })) {
            return false;
        }
        if (slash == std::string_view::npos) {
            return true;
        }
        rest = rest.substr(slash + 1);
    }
}

// mountinfo's octal escapes (\040 for a space, ...).
std::string unescapeMountField(std::string_view field) {
    std::string out;
    for (std::size_t i = 0; i < field.size(); ++i) {
        if (field[i] == '\\' && i + 3 < field.size() &&
            std::all_of(field.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                        field.begin() + static_cast<std::ptrdiff_t>(i) + 4,
                        [](char c) { return c >= '0' && c <= '7'; })) {
            out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                     (field[i + 3] - '0'));
            i += 3;
        } else {
            out += field[i];
        }
    }
    return out;
}

// The whole of a small file under /proc or /sys, read through a close-on-exec
// fd; "" if it cannot be read (a cgroup removed meanwhile).
std::string readText(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    std::string text;
    if (!fd.ok()) {
        return text;
    }
    char buffer[4096];
    for (ssize_t n; (n = ::read(fd.get(), buffer, sizeof(buffer))) != 0;) {
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        text.append(buffer, static_cast<std::size_t>(n));
    }
    return text;
}

struct DirectoryCloser {
    void operator()(DIR* dir) const noexcept { ::closedir(dir); }
};
using Directory = std::unique_ptr<DIR, DirectoryCloser>;

// The names of the cgroups directly below `dir` (an absolute path).
std::vector<std::string> childCgroups(const std::string& dir) {
    std::vector<std::string> names;
    Directory d(::opendir(dir.c_str()));  // O_CLOEXEC, as glibc opens it
    if (!d) {
        return names;  // removed meanwhile, or not a cgroup
    }
    while (const struct dirent* entry = ::readdir(d.get())) {
        std::string_view name = entry->d_name;
        if (entry->d_type == DT_DIR && name != "." && name != "..") {
            names.emplace_back(name);
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

// A cgroup and those below it: their cgroup ids (the directories' inode
// numbers, which PIDFD_GET_INFO's cgroupid is) and the pids in them.
struct Subtree {
    std::set<std::uint64_t> cgroupIds;
    std::set<pid_t> pids;
};

void collect(const std::string& dir, int depth, Subtree& out) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode) ||
        out.cgroupIds.size() >= kMaxCgroups) {
        return;
    }
    out.cgroupIds.insert(st.st_ino);
    std::istringstream procs(readText(dir + "/cgroup.procs"));
    for (std::string line; std::getline(procs, line);) {
        if (std::optional<std::uint64_t> pid = parseCanonicalDecimal(line, INT_MAX)) {
            out.pids.insert(static_cast<pid_t>(*pid));
        }
    }
    if (depth < kMaxDepth) {
        for (const std::string& name : childCgroups(dir)) {
            collect(dir + "/" + name, depth + 1, out);
        }
    }
}

bool isDirectory(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Whether `pidfd`'s process is, now, in one of `cgroupIds`: its cgroup read
// from the pidfd itself, so it is about this process whatever its pid means.
bool isIn(const PidFd& pidfd, const std::set<std::uint64_t>& cgroupIds) {
    try {
        std::optional<std::uint64_t> id = pidfd.info(InfoFlags::CgroupId).cgroupId();
        return id && cgroupIds.count(*id) != 0;
    } catch (const std::system_error&) {
        return false;  // exited
    }
}

}  // namespace

bool looksLikeSelector(std::string_view text) noexcept {
    if (startsWith(text, kContainer) || startsWith(text, kCgroup) || startsWith(text, kUnit) ||
        startsWith(text, kMachine)) {
        return true;
    }
    std::size_t colon = text.find(':');
    return colon != std::string_view::npos && isDigits(text.substr(0, colon));
}

Selector parseSelector(std::string_view text) {
    Selector selector;
    selector.text = text;
    if (startsWith(text, kContainer)) {
        selector.kind = SelectorKind::Container;
        selector.value = text.substr(kContainer.size());
        if (selector.value.empty() || selector.value.size() > kContainerIdLength ||
            !isHex(selector.value)) {
            invalid(text,
                    "container:ID, ID a container id or a prefix of one (1 to 64 "
                    "lower-case hexadecimal digits)");
        }
    } else if (startsWith(text, kCgroup)) {
        selector.kind = SelectorKind::Cgroup;
        selector.value = text.substr(kCgroup.size());
        if (!isCgroupPath(selector.value)) {
            invalid(text,
                    "cgroup:PATH, PATH absolute from the cgroup2 root, without empty, "
                    "'.' or '..' components (cgroup:/system.slice/nginx.service)");
        }
    } else if (startsWith(text, kUnit) || startsWith(text, kMachine)) {
        bool unit = startsWith(text, kUnit);
        selector.kind = unit ? SelectorKind::Unit : SelectorKind::Machine;
        selector.value = text.substr(unit ? kUnit.size() : kMachine.size());
        if (!isName(selector.value)) {
            invalid(text, unit ? "unit:NAME, a systemd unit name (unit:nginx.service)"
                               : "machine:NAME, a machine name as machinectl lists it");
        }
    } else {
        std::size_t colon = text.find(':');
        std::optional<std::uint64_t> pid, id;
        if (colon != std::string_view::npos) {
            pid = parseCanonicalDecimal(text.substr(0, colon), INT_MAX);
            id = parseCanonicalDecimal(text.substr(colon + 1), UINT64_MAX);
        }
        if (!pid || *pid == 0 || !id || *id == 0) {
            invalid(text,
                    "container:ID, cgroup:PATH, unit:NAME, machine:NAME or PID:ID (a pid "
                    "and its pidfs id, in decimal)");
        }
        selector.kind = SelectorKind::PidWithId;
        selector.pid = static_cast<pid_t>(*pid);
        selector.id = *id;
    }
    return selector;
}

std::string findCgroup2Mount(const std::string& mountinfo) {
    std::istringstream in(readText(mountinfo));
    for (std::string line; std::getline(in, line);) {
        // id parent major:minor root mount-point options [optional...] - type source super
        std::istringstream fields(line);
        std::string id, parent, device, root, mountPoint, options, field;
        fields >> id >> parent >> device >> root >> mountPoint >> options;
        while (fields >> field && field != "-") {
        }
        std::string type;
        fields >> type;
        if (type == "cgroup2" && root == "/") {
            return unescapeMountField(mountPoint);
        }
    }
    throw ServiceError(ErrorKind::NotSupported, "No cgroup2 hierarchy is mounted (none in " +
                                                    mountinfo +
                                                    "): containers and cgroups cannot be named");
}

std::optional<std::string> containerIdOfCgroupName(std::string_view name) {
    static constexpr std::string_view kScopePrefixes[] = {"docker-", "libpod-", "cri-containerd-",
                                                          "crio-"};
    constexpr std::string_view kScope = ".scope";
    std::string_view id = name;
    if (name.size() > kScope.size() && name.substr(name.size() - kScope.size()) == kScope) {
        id = name.substr(0, name.size() - kScope.size());
        auto prefix = std::find_if(std::begin(kScopePrefixes), std::end(kScopePrefixes),
                                   [&](std::string_view p) { return startsWith(id, p); });
        if (prefix == std::end(kScopePrefixes)) {
            return std::nullopt;
        }
        id = id.substr(prefix->size());
    } else if (startsWith(name, "libpod-")) {
        id = name.substr(std::string_view("libpod-").size());  // /libpod_parent/libpod-ID
    }
    if (id.size() != kContainerIdLength || !isHex(id)) {
        return std::nullopt;
    }
    return std::string(id);
}

const std::string& Resolver::cgroupRoot() {
    if (cgroupRoot_.empty()) {
        cgroupRoot_ = findCgroup2Mount();
    }
    return cgroupRoot_;
}

std::vector<ContainerCgroup> Resolver::findContainers(std::string_view prefix) {
    const std::string& root = cgroupRoot();
    std::vector<ContainerCgroup> found;
    std::set<std::string> seen;
    std::size_t walked = 0;
    // Depth first, in name order: the same tree gives the same answer.
    std::function<void(const std::string&, int)> walk = [&](const std::string& path, int depth) {
        for (const std::string& name : childCgroups(root + path)) {
            if (++walked > kMaxCgroups) {
                return;
            }
            std::string child = (path == "/" ? "" : path) + "/" + name;
            if (std::optional<std::string> id = containerIdOfCgroupName(name)) {
                if (startsWith(*id, prefix) && seen.insert(*id).second) {
                    found.push_back({*id, child});
                }
                continue;  // a container's own cgroups are its business
            }
            if (depth < kMaxDepth) {
                walk(child, depth + 1);
            }
        }
    };
    walk("/", 0);
    return found;
}

PidFd Resolver::mainProcessOf(const std::string& path) {
    std::string dir = cgroupRoot() + (path == "/" ? "" : path);
    Subtree subtree;
    collect(dir, 0, subtree);
    std::optional<PidFd> oldest;
    for (pid_t pid : subtree.pids) {
        try {
            PidFd pidfd = PidFd::open(pid);
            // Its cgroup and parent read from the pidfd: about this process,
            // whatever the pid names by now.
            Info info = pidfd.info(InfoFlags::Pid | InfoFlags::CgroupId);
            std::optional<std::uint64_t> cgroup = info.cgroupId();
            if (!cgroup || subtree.cgroupIds.count(*cgroup) == 0 ||
                subtree.pids.count(info.parentPid().value_or(0)) != 0) {
                continue;  // moved out meanwhile, or a descendant of another one in here
            }
            // pidfs ids grow with each process made: the smallest is the oldest.
            if (!oldest || pidfd.id() < oldest->id()) {
                oldest = std::move(pidfd);
            }
        } catch (const std::system_error&) {
            // exited meanwhile, or a thread's id listed for a moment
        }
    }
    if (!oldest) {
        throw ServiceError(ErrorKind::NoSuchProcess, subtree.cgroupIds.empty()
                                                         ? "No cgroup " + path
                                                         : "No process in cgroup " + path);
    }
    return std::move(*oldest);
}

PidFd Resolver::containerProcess(const Selector& selector, const Visible& visible) {
    std::vector<ContainerCgroup> matches = findContainers(selector.value);
    // The main process of each candidate, to tell which ones the caller may see.
    std::vector<std::pair<ContainerCgroup, std::optional<PidFd>>> candidates;
    auto processOf = [&](const ContainerCgroup& container) {
        // podman puts the payload one level down when it splits the cgroup.
        std::string path = container.path;
        for (const std::string& sub :
             {std::string("container"), "libpod-payload-" + container.id}) {
            if (isDirectory(cgroupRoot() + container.path + "/" + sub)) {
                path = container.path + "/" + sub;
                break;
            }
        }
        return mainProcessOf(path);
    };
    for (const ContainerCgroup& container : matches) {
        if (matches.size() == 1 || !visible) {
            candidates.emplace_back(container, std::nullopt);
            continue;
        }
        try {
            PidFd pidfd = processOf(container);
            if (visible(pidfd)) {
                candidates.emplace_back(container, std::move(pidfd));
            }
        } catch (const ServiceError&) {
            // no process left: it does not count
        }
    }
    if (candidates.empty()) {
        noSuchProcess(selector);
    }
    if (candidates.size() > 1) {
        std::string ids;
        for (const auto& [container, pidfd] : candidates) {
            ids += (ids.empty() ? "" : ", ") + container.id.substr(0, kShortIdLength);
        }
        throw ServiceError(ErrorKind::InvalidArgs, "Container id prefix '" + selector.value +
                                                       "' is ambiguous: it matches " + ids);
    }
    auto& [container, pidfd] = candidates.front();
    if (pidfd) {
        return std::move(*pidfd);
    }
    try {
        return processOf(container);
    } catch (const ServiceError&) {
        noSuchProcess(selector);  // as for no container: its cgroup is no business of the caller
    }
}

PidFd Resolver::unitProcess(const Selector& selector) {
    bool isUnit = selector.kind == SelectorKind::Unit;
    if (units_ == nullptr) {
        throw ServiceError(
            ErrorKind::NotSupported,
            "Cannot resolve " + selector.text +
                ": nsfdd asks systemd over the system bus, and has no connection to it");
    }
    std::optional<UnitDirectory::Unit> unit =
        isUnit ? units_->unit(selector.value) : units_->machine(selector.value);
    if (!unit) {
        noSuchProcess(selector, isUnit ? "no such unit loaded" : "no such machine");
    }
    if (unit->mainPid <= 0) {
        if (unit->controlGroup.empty()) {
            noSuchProcess(selector, "it has no process");
        }
        try {
            return mainProcessOf(unit->controlGroup);
        } catch (const ServiceError&) {
            noSuchProcess(selector, "it has no process");
        }
    }
    std::optional<PidFd> pidfd;
    try {
        pidfd = PidFd::open(unit->mainPid);
    } catch (const std::system_error&) {
        noSuchProcess(selector, "its process has exited");
    }
    // Opened first, checked after: the pid systemd gave may have been reused
    // by now; a process in the unit's cgroup is the unit's.
    if (!unit->controlGroup.empty()) {
        Subtree subtree;
        collect(cgroupRoot() + (unit->controlGroup == "/" ? "" : unit->controlGroup), 0, subtree);
        if (!isIn(*pidfd, subtree.cgroupIds)) {
            noSuchProcess(selector, "its process changed while it was looked up");
        }
    }
    return std::move(*pidfd);
}

PidFd Resolver::resolve(const Selector& selector, const Visible& visible) {
    switch (selector.kind) {
        case SelectorKind::Container:
            return containerProcess(selector, visible);
        case SelectorKind::Cgroup:
            try {
                return mainProcessOf(selector.value);
            } catch (const ServiceError& e) {
                noSuchProcess(selector, e.what());
            }
        case SelectorKind::Unit:
        case SelectorKind::Machine:
            return unitProcess(selector);
        case SelectorKind::PidWithId:
            break;
    }
    throw ServiceError(ErrorKind::InvalidArgs, "Cannot resolve " + selector.text + " here");
}

}  // namespace nsfd::daemon
