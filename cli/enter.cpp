// SPDX-License-Identifier: LGPL-2.1-or-later
#include "enter.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <system_error>

namespace nsfd::cli {

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

void enter(const NsFd& ns) {
    if (::setns(ns.get(), cloneFlag(ns.type())) < 0) {
        fail("Failed to enter the " + std::string(toString(ns.type())) + " namespace");
    }
}

[[noreturn]] void execCommand(const std::vector<std::string>& command) {
    std::vector<char*> argv;
    argv.reserve(command.size() + 1);
    for (const std::string& arg : command) {
        argv.push_back(const_cast<char*>(arg.c_str()));
    }
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    int err = errno;
    (void)std::fprintf(stderr, "nsfdctl: failed to run %s: %s\n", argv[0], std::strerror(err));
    ::_exit(err == ENOENT ? 127 : 126);
}

int exitCodeOf(int status) {
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

void replaceEnvironment(const std::vector<std::string>& environment) {
    if (::clearenv() != 0) {
        fail("Failed to clear the environment");
    }
    for (const std::string& entry : environment) {
        std::size_t equals = entry.find('=');
        if (equals == std::string::npos || equals == 0) {
            continue;  // not NAME=VALUE: execve(2) takes it, a shell would not
        }
        if (::setenv(entry.substr(0, equals).c_str(), entry.c_str() + equals + 1, 1) < 0) {
            fail("Failed to set " + entry.substr(0, equals));
        }
    }
}

}  // namespace

TargetFiles::TargetFiles(const PidFd& process) : pid_(process.pid()) {
    std::string path = "/proc/" + std::to_string(pid_);
    directory_.reset(::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!directory_.ok()) {
        fail("Failed to open " + path);
    }
    // The directory stays with the process it was opened for: if that is still
    // the pidfd's process now, the pid was not reused in between.
    if (process.hasExited()) {
        errno = ESRCH;
        fail("Failed to open " + path);
    }
}

UniqueFd TargetFiles::open(const char* name, int flags, const char* what) const {
    UniqueFd fd(::openat(directory_.get(), name, flags | O_CLOEXEC));
    if (!fd.ok()) {
        fail(std::string("Failed to open the ") + what + " of pid " + std::to_string(pid_));
    }
    return fd;
}

UniqueFd TargetFiles::root() const {
    return open("root", O_RDONLY | O_DIRECTORY, "root directory");
}

UniqueFd TargetFiles::workingDirectory() const {
    return open("cwd", O_RDONLY | O_DIRECTORY, "working directory");
}

std::vector<std::string> TargetFiles::environment() const {
    UniqueFd fd = open("environ", O_RDONLY, "environment");
    std::string text;
    char buffer[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            fail("Failed to read the environment of pid " + std::to_string(pid_));
        }
        if (n == 0) {
            break;
        }
        text.append(buffer, static_cast<std::size_t>(n));
    }
    std::vector<std::string> out;
    for (std::size_t start = 0; start < text.size();) {
        std::size_t end = text.find('\0', start);
        if (end == std::string::npos) {
            end = text.size();
        }
        out.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

uid_t TargetFiles::uid() const {
    struct stat st {};
    if (::fstat(directory_.get(), &st) < 0) {
        fail("Failed to read the uid of pid " + std::to_string(pid_));
    }
    return st.st_uid;
}

gid_t TargetFiles::gid() const {
    struct stat st {};
    if (::fstat(directory_.get(), &st) < 0) {
        fail("Failed to read the gid of pid " + std::to_string(pid_));
    }
    return st.st_gid;
}

UniqueFd openDirectory(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.ok()) {
        fail("Failed to open directory " + path);
    }
    return fd;
}

int runInNamespaces(std::map<NsType, NsFd> namespaces, EnterOptions options,
                    const std::vector<std::string>& command) {
    std::string workingDirectory;
    if (char* cwd = ::getcwd(nullptr, 0)) {
        workingDirectory = cwd;
        std::free(cwd);
    }
    bool root = ::geteuid() == 0;
    auto user = namespaces.find(NsType::User);
    bool enterUser = user != namespaces.end();
    // Joining the user namespace we are already in is EINVAL: skip it.
    if (enterUser) {
        NsFd own = NsFd::current(NsType::User);
        enterUser = own.inode() != user->second.inode();
    }
    // In a user namespace the ids become 0 (or -S/-G's) and the groups go,
    // unless --preserve-credentials; as nsenter, drop the groups before
    // entering too, where root still may.
    bool setIds = enterUser && !options.preserveCredentials;
    bool dropGroups = setIds || options.gid.has_value();
    bool groupsDropped = setIds && ::setgroups(0, nullptr) == 0;
    uid_t uid = options.uid.value_or(0);
    gid_t gid = options.gid.value_or(0);
    if (enterUser && !root) {
        enter(user->second);
    }
    bool forkFirst = false;
    for (const auto& [type, ns] : namespaces) {
        if (type == NsType::User) {
            continue;
        }
        // The *_for_children kinds set what children get, like pid and time.
        forkFirst = forkFirst || type == NsType::Pid || type == NsType::PidForChildren ||
                    type == NsType::Time || type == NsType::TimeForChildren;
        enter(ns);
    }
    if (enterUser && root) {
        enter(user->second);
    }
    if (namespaces.count(NsType::Mnt) > 0 && !options.workingDirectory.ok() &&
        (workingDirectory.empty() || ::chdir(workingDirectory.c_str()) < 0)) {
        (void)!::chdir("/");
    }
    namespaces.clear();  // close the fds before the command runs (they are close-on-exec too)

    if (options.root.ok()) {
        // As nsenter: the working directory stays where it is unless -w says otherwise.
        if (!options.workingDirectory.ok()) {
            options.workingDirectory.reset(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
            if (!options.workingDirectory.ok()) {
                fail("Failed to open the working directory");
            }
        }
        if (::fchdir(options.root.get()) < 0 || ::chroot(".") < 0 || ::chdir("/") < 0) {
            fail("Failed to change the root directory");
        }
        options.root.reset();
    }
    if (options.workingDirectory.ok()) {
        if (::fchdir(options.workingDirectory.get()) < 0) {
            fail("Failed to change the working directory");
        }
        options.workingDirectory.reset();
    }
    if (options.environment) {
        replaceEnvironment(*options.environment);
    }
    // EPERM: a user namespace whose setgroups is "deny"; the groups stay as they are.
    if (dropGroups && !groupsDropped && ::setgroups(0, nullptr) < 0 && errno != EPERM) {
        fail("Failed to drop the supplementary groups");
    }
    if ((setIds || options.gid) && ::setresgid(gid, gid, gid) < 0) {
        fail("Failed to become gid " + std::to_string(gid));
    }
    if ((setIds || options.uid) && ::setresuid(uid, uid, uid) < 0) {
        fail("Failed to become uid " + std::to_string(uid));
    }

    if (!forkFirst || !options.fork) {
        execCommand(command);
    }
    pid_t child = ::fork();
    if (child < 0) {
        fail("Failed to fork");
    }
    if (child == 0) {
        execCommand(command);
    }
    // Like a shell: let the command have the terminal's signals.
    (void)std::signal(SIGINT, SIG_IGN);
    (void)std::signal(SIGQUIT, SIG_IGN);
    int status = 0;
    while (::waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) {
            fail("Failed to wait for the command");
        }
    }
    // Our children would now start in the target's pid namespace, where they
    // could not see us: nothing more may run that forks, such as a leak
    // checker at exit (LeakSanitizer's tracer hangs there). End as the
    // command did.
    std::cout.flush();
    std::cerr.flush();
    (void)std::fflush(nullptr);
    ::_exit(exitCodeOf(status));
}

}  // namespace nsfd::cli
