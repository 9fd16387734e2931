// SPDX-License-Identifier: LGPL-2.1-or-later
// The harness's own promise: a wait that runs out fails the test saying what it
// waited for, with nsfdd's log, instead of hanging until ctest's timeout.
#include <signal.h>
#include <unistd.h>

#include "fixture.hpp"

namespace nsfd::test {
namespace {

class HarnessTest : public DaemonTest {};

TEST_F(HarnessTest, AWaitThatRunsOutSaysWhatItWaitedForWithNsfddsLog) {
    pid_t sleeper = forkProcess();
    if (sleeper == 0) {
        ::pause();
        ::_exit(0);
    }
    std::string message;
    try {
        reapWithin(sleeper, "a child that is never told to exit", std::chrono::milliseconds(200));
    } catch (const WaitTimedOut& e) {
        message = e.what();
    }
    EXPECT_EQ(
        message.rfind("Gave up after 200 ms waiting for a child that is never told to exit", 0), 0U)
        << message;
    EXPECT_NE(message.find("ready on the bus as org.nsfd1"), std::string::npos)
        << "nsfdd's log is in the message: " << message;
}

}  // namespace
}  // namespace nsfd::test
