// SPDX-License-Identifier: LGPL-2.1-or-later
#include "enter.hpp"

#include <grp.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace nsfd::cli {

namespace {

void enter(const NsFd& ns) {
    if (::setns(ns.get(), cloneFlag(ns.type())) < 0) {
        throw std::system_error(
            errno, std::generic_category(),
            "Failed to enter the " + std::string(toString(ns.type())) + " namespace");
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

}  // namespace

int runInNamespaces(std::map<NsType, NsFd> namespaces, const std::vector<std::string>& command) {
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
    if (enterUser) {
        if (::setgroups(0, nullptr) < 0 && errno != EPERM) {
            throw std::system_error(errno, std::generic_category(), "Failed to drop groups");
        }
        if (::setresgid(0, 0, 0) < 0 || ::setresuid(0, 0, 0) < 0) {
            throw std::system_error(errno, std::generic_category(),
                                    "Failed to become root in the user namespace");
        }
    }
    if (namespaces.count(NsType::Mnt) > 0 &&
        (workingDirectory.empty() || ::chdir(workingDirectory.c_str()) < 0)) {
        (void)!::chdir("/");
    }
    namespaces.clear();  // close the fds before the command runs (they are close-on-exec too)

    if (!forkFirst) {
        execCommand(command);
    }
    pid_t child = ::fork();
    if (child < 0) {
        throw std::system_error(errno, std::generic_category(), "Failed to fork");
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
            throw std::system_error(errno, std::generic_category(),
                                    "Failed to wait for the command");
        }
    }
    return exitCodeOf(status);
}

}  // namespace nsfd::cli
