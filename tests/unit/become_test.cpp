// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfd-helper's one privileged step, in a forked child of this (root) test:
// what the child is afterwards, read back from the kernel.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>

#include "nsfd-helper/become.hpp"

namespace {

using nsfd::helper::enterAndBecome;
using nsfd::helper::Identity;
using nsfd::helper::Step;

// Runs `check` in a child that became `identity` with a parent-death signal
// set before; the child's exit status is 0 when every check held, else the
// number of the first that failed.
int becomeAndCheck(const Identity& identity) {
    pid_t pid = ::fork();
    if (pid == 0) {
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
            ::_exit(10);
        }
        if (enterAndBecome({}, identity) != Step::None) {
            ::_exit(11);
        }
        int signal = 0;
        if (::prctl(PR_GET_PDEATHSIG, &signal, 0, 0, 0) < 0 || signal != SIGKILL) {
            ::_exit(12);  // the kernel cleared it at the uid change; it must be set again
        }
        uid_t r = 0, e = 0, s = 0;
        if (::getresuid(&r, &e, &s) < 0 || r != identity.uid || e != identity.uid ||
            s != identity.uid) {
            ::_exit(13);
        }
        if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
            ::_exit(14);
        }
        ::_exit(0);
    }
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
        return -1;
    }
    return WEXITSTATUS(status);
}

TEST(BecomeTest, TheParentDeathSignalSurvivesTheCredentialChange) {
    if (::geteuid() != 0) {
        GTEST_SKIP() << "needs root: the step changes uids";
    }
    std::array<gid_t, 1> groups{65534};
    EXPECT_EQ(becomeAndCheck(Identity{65534, 65534, groups}), 0);
    EXPECT_EQ(becomeAndCheck(Identity{0, 0, {}}), 0) << "root: no uid change, nothing cleared";
}

}  // namespace
