// SPDX-License-Identifier: LGPL-2.1-or-later
// Test helpers: real child processes, and the leak check every test runs under.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include "nsfd/unique_fd.hpp"

namespace nsfd::test {

// How long a helper waits for a process (to start, to write, to exit) before it
// fails the test saying what it waited for. Far above what a loaded 2-core
// machine needs, well below ctest's --timeout (300 s): a hang is a failure with
// a message, not a test killed without one.
inline constexpr std::chrono::seconds kWaitLimit{60};

// What a helper throws when kWaitLimit ran out.
class WaitTimedOut : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Throws WaitTimedOut: "Gave up after N s waiting for <what>", then what the
// report set below adds (the integration harness: the log of every nsfdd).
[[noreturn]] void throwWaitTimedOut(const std::string& what,
                                    std::chrono::milliseconds limit = kWaitLimit);
// Fails the current test with throwWaitTimedOut's message, for a destructor.
void addWaitTimedOutFailure(const std::string& what, std::chrono::milliseconds limit = kWaitLimit);
void setWaitTimedOutReport(std::function<std::string()> report);

// Waits until `pid`, a child of this process, has exited, without reaping it;
// false if it still runs after `limit`.
bool awaitChildExit(pid_t pid, std::chrono::milliseconds limit = kWaitLimit);
// Reaps child `pid`: its wait status. If it has not exited after `limit`, kills
// and reaps it, then throws WaitTimedOut for `what` ("nsfdctl watch to exit").
int reapWithin(pid_t pid, const std::string& what, std::chrono::milliseconds limit = kWaitLimit);

// A child process made with clone3(2). It runs `setup` (whose non-zero return is
// reported as a failed spawn), tells the parent it is ready, then waits until
// the parent releases it with an exit code. Never leaves a child unreaped: the
// destructor kills and reaps what is still running. Every wait is bounded by
// kWaitLimit.
class Child {
  public:
    struct Options {
        std::uint64_t cloneFlags = 0;  // CLONE_NEW*
        pid_t setTid = 0;              // clone3 set_tid: ask for this pid
    };

    // `setup` runs in the child; return 0 for success or an errno.
    static Child spawn(const std::function<int()>& setup, Options options);
    static Child spawn(const std::function<int()>& setup = {}) { return spawn(setup, Options()); }

    Child(Child&& other) noexcept;
    Child& operator=(Child&&) = delete;
    Child(const Child&) = delete;
    ~Child();

    pid_t pid() const noexcept { return pid_; }

    // Lets the child _exit(code); does not wait.
    void release(int code);
    // Waits until the child has exited (a zombie), without reaping it. Throws
    // WaitTimedOut after kWaitLimit.
    void awaitExit() const;
    // Reaps the child; returns the wait(2) status. Throws WaitTimedOut (and
    // kills and reaps it) if it has not exited after kWaitLimit.
    int reap();
    bool reaped() const noexcept { return reaped_; }

  private:
    Child(pid_t pid, UniqueFd go) : pid_(pid), go_(std::move(go)) {}

    pid_t pid_;
    UniqueFd go_;
    bool reaped_ = false;
};

// A second thread of this process that idles until destroyed: a tid that is
// not a thread-group leader.
class IdleThread {
  public:
    IdleThread();
    ~IdleThread();
    pid_t tid() const noexcept { return tid_; }

  private:
    std::atomic<pid_t> tid_{0};
    std::atomic<bool> done_{false};
    std::thread thread_;
};

// Runs `fn` on a new thread whose (thread-local, raw syscall) credentials are
// uid/gid with no supplementary groups and no capabilities, and rethrows what it threw.
void runAsUser(uid_t uid, gid_t gid, const std::function<void()>& fn);

// The number of open fds of this process, or of `pid`.
int openFdCount();
int countFds(pid_t pid);

// A child that may outlive single tests (a test bus); the leak check ignores it.
void allowLongLivedChild(pid_t pid);

// Fails the test if it left an fd open or a child unreaped.
class LeakCheckedTest : public ::testing::Test {
  protected:
    void SetUp() override;
    void TearDown() override;

  private:
    int fdsAtStart_ = -1;  // -1: SetUp never ran (a fixture skipped before it)
};

// The errno of a std::system_error thrown by `fn`, or 0 if it threw nothing.
int errnoOf(const std::function<void()>& fn, std::string* message = nullptr);

}  // namespace nsfd::test
