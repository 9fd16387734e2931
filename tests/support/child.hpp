// SPDX-License-Identifier: LGPL-2.1-or-later
// Test helpers: real child processes, and the leak check every test runs under.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "nsfd/unique_fd.hpp"

namespace nsfd::test {

// A child process made with clone3(2). It runs `setup` (whose non-zero return is
// reported as a failed spawn), tells the parent it is ready, then waits until
// the parent releases it with an exit code. Never leaves a child unreaped: the
// destructor kills and reaps what is still running.
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
    // Waits until the child has exited (a zombie), without reaping it.
    void awaitExit() const;
    // Reaps the child; returns the wait(2) status.
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
    int fdsAtStart_ = 0;
};

// The errno of a std::system_error thrown by `fn`, or 0 if it threw nothing.
int errnoOf(const std::function<void()>& fn, std::string* message = nullptr);

}  // namespace nsfd::test
