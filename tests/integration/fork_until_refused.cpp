// SPDX-License-Identifier: LGPL-2.1-or-later
// For spawn_test's task limit: forks children that wait, until fork(2) is
// refused or `limit` (argv[1]) children run, and prints "FORKED ERRNO" (ERRNO
// 0 if never refused). Then kills and reaps every child it made: it leaves
// nothing behind whatever the limit did.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
    long limit = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 0;
    std::vector<pid_t> children;
    children.reserve(static_cast<std::size_t>(limit > 0 ? limit : 0));
    int refused = 0;
    while (static_cast<long>(children.size()) < limit) {
        pid_t pid = ::fork();
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            for (;;) {
                ::pause();
            }
        }
        if (pid < 0) {
            refused = errno;
            break;
        }
        children.push_back(pid);
    }
    (void)std::printf("%zu %d\n", children.size(), refused);
    (void)std::fflush(stdout);
    for (pid_t pid : children) {
        ::kill(pid, SIGKILL);
    }
    for (pid_t pid : children) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    return 0;
}
