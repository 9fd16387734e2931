// SPDX-License-Identifier: LGPL-2.1-or-later
// libnsfd on its own: start a process in fresh namespaces, show them and its
// info through a pidfd, then its exit status. Run as root.
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <system_error>

#include "nsfd/nsfd.hpp"

namespace {

pid_t spawnInFreshNamespaces(int goPipe) {
    struct clone_args args {};
    args.flags = CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNS | CLONE_NEWPID |
                 CLONE_NEWCGROUP | 0x80 /* CLONE_NEWTIME */;
    args.exit_signal = SIGCHLD;
    long pid = ::syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0) {
        const char name[] = "nsfd-demo";
        if (::sethostname(name, sizeof(name) - 1) < 0) {
            ::_exit(1);
        }
        char byte;
        (void)!::read(goPipe, &byte, 1);
        ::_exit(7);
    }
    return static_cast<pid_t>(pid);
}

}  // namespace

int main() {
    int go[2];
    if (::pipe2(go, O_CLOEXEC) < 0) {
        std::perror("pipe2");
        return 1;
    }
    nsfd::UniqueFd goRead(go[0]);
    nsfd::UniqueFd goWrite(go[1]);
    pid_t pid = spawnInFreshNamespaces(goRead.get());
    if (pid < 0) {
        std::perror("clone3 (run as root)");
        return 1;
    }
    int status = 0;
    try {
        nsfd::PidFd process = nsfd::PidFd::open(pid);
        std::cout << "process " << pid << ", pidfs id " << process.id() << '\n';
        std::cout << "namespace           id          same as ours\n";
        for (nsfd::NsType type : nsfd::allNsTypes()) {
            nsfd::NsFd ns = process.namespaceFd(type);
            bool shared = ns.id() == nsfd::NsFd::current(type).id();
            std::printf("%-19s %-11llu %s\n", std::string(toString(type)).c_str(),
                        static_cast<unsigned long long>(ns.id()), shared ? "yes" : "no");
        }
        nsfd::Info info = process.info();
        nsfd::Credentials creds = info.credentials().value();
        std::cout << "info: pid " << *info.pid() << ", parent " << *info.parentPid()
                  << ", cgroup id " << *info.cgroupId() << ", uid " << creds.ruid << ", gid "
                  << creds.rgid << '\n';
        (void)!::write(goWrite.get(), "x", 1);
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        std::cout << "exit status (wait status) " << process.info().exitStatus().value_or(-1)
                  << ", exit code " << WEXITSTATUS(status) << '\n';
    } catch (const std::exception& e) {
        std::cerr << e.what() << '\n';
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        return 1;
    }
    return 0;
}
