// SPDX-License-Identifier: LGPL-2.1-or-later
#include "child.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <exception>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace nsfd::test {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct TimedOutReport {
    std::mutex mutex;
    std::function<std::string()> report;
};

TimedOutReport& timedOutReport() {
    static TimedOutReport report;
    return report;
}

std::string timedOutMessage(const std::string& what, milliseconds limit) {
    std::string message = "Gave up after " +
                          (limit.count() % 1000 == 0 ? std::to_string(limit.count() / 1000) + " s"
                                                     : std::to_string(limit.count()) + " ms") +
                          " waiting for " + what;
    TimedOutReport& report = timedOutReport();
    std::lock_guard lock(report.mutex);
    if (report.report) {
        message += "\n" + report.report();
    }
    return message;
}

// Milliseconds left until `deadline`, for poll(2): 0 once it has passed.
int msUntil(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 1000 * 1000));
}

// Reads `len` bytes that child `pid` writes to `fd` within kWaitLimit.
void readFully(int fd, void* buf, size_t len, pid_t pid) {
    auto deadline = Clock::now() + kWaitLimit;
    auto* p = static_cast<char*>(buf);
    while (len > 0) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int ready = ::poll(&pfd, 1, msUntil(deadline));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready == 0) {
            throwWaitTimedOut("child " + std::to_string(pid) + " to report the end of its setup");
        }
        ssize_t n = ::read(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            throw std::runtime_error("child pipe closed early");
        }
        p += n;
        len -= static_cast<size_t>(n);
    }
}

}  // namespace

Child Child::spawn(const std::function<int()>& setup, Options options) {
    int ready[2];
    int go[2];
    if (::pipe2(ready, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    UniqueFd readyRead(ready[0]), readyWrite(ready[1]);
    if (::pipe2(go, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    UniqueFd goRead(go[0]), goWrite(go[1]);

    struct clone_args args {};
    args.flags = options.cloneFlags;
    args.exit_signal = SIGCHLD;
    pid_t tid = options.setTid;
    if (tid > 0) {
        args.set_tid = reinterpret_cast<std::uintptr_t>(&tid);
        args.set_tid_size = 1;
    }
    long pid = ::syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0) {
        throw std::system_error(errno, std::generic_category(), "clone3");
    }
    if (pid == 0) {
        // The child: only async-signal-safe work from here, then _exit.
        int result = setup ? setup() : 0;
        (void)!::write(readyWrite.get(), &result, sizeof(result));
        if (result != 0) {
            ::_exit(127);
        }
        int code = 0;
        ssize_t n;
        do {
            n = ::read(goRead.get(), &code, sizeof(code));
        } while (n < 0 && errno == EINTR);
        ::_exit(n == sizeof(code) ? code : 126);
    }
    readyWrite.reset();
    goRead.reset();
    Child child(static_cast<pid_t>(pid), std::move(goWrite));
    int result = 0;
    readFully(readyRead.get(), &result, sizeof(result), child.pid());
    if (result != 0) {
        throw std::system_error(result, std::generic_category(), "child setup");
    }
    return child;
}

Child::Child(Child&& other) noexcept
    : pid_(other.pid_), go_(std::move(other.go_)), reaped_(other.reaped_) {
    other.reaped_ = true;
}

Child::~Child() {
    if (!reaped_) {
        ::kill(pid_, SIGKILL);
        try {
            reap();
        } catch (const std::exception& e) {
            ADD_FAILURE() << e.what();
        }
    }
}

void Child::release(int code) {
    (void)!::write(go_.get(), &code, sizeof(code));
    go_.reset();
}

void Child::awaitExit() const {
    if (!awaitChildExit(pid_)) {
        throwWaitTimedOut("child " + std::to_string(pid_) + " to exit (Child::awaitExit)");
    }
}

int Child::reap() {
    try {
        int status = reapWithin(pid_, "child " + std::to_string(pid_) + " to exit (Child::reap)");
        reaped_ = true;
        go_.reset();
        return status;
    } catch (const WaitTimedOut&) {
        reaped_ = true;  // killed and reaped
        go_.reset();
        throw;
    }
}

void throwWaitTimedOut(const std::string& what, milliseconds limit) {
    throw WaitTimedOut(timedOutMessage(what, limit));
}

void addWaitTimedOutFailure(const std::string& what, milliseconds limit) {
    ADD_FAILURE() << timedOutMessage(what, limit);
}

void setWaitTimedOutReport(std::function<std::string()> report) {
    TimedOutReport& timedOut = timedOutReport();
    std::lock_guard lock(timedOut.mutex);
    timedOut.report = std::move(report);
}

bool awaitChildExit(pid_t pid, milliseconds limit) {
    auto deadline = Clock::now() + limit;
    // Readable once the process has exited; without it, look every 10 ms.
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    for (;;) {
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT | WNOHANG) < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(errno, std::generic_category(),
                                    "waitid for child " + std::to_string(pid));
        }
        if (info.si_pid != 0) {
            return true;
        }
        int left = msUntil(deadline);
        if (left == 0) {
            return false;
        }
        struct pollfd pfd = {pidfd.get(), POLLIN, 0};  // a negative fd only sleeps
        ::poll(&pfd, 1, pidfd.get() >= 0 ? left : std::min(left, 10));
    }
}

int reapWithin(pid_t pid, const std::string& what, milliseconds limit) {
    bool exited = awaitChildExit(pid, limit);
    if (!exited) {
        ::kill(pid, SIGKILL);
        if (!awaitChildExit(pid, std::chrono::seconds(10))) {
            throwWaitTimedOut(what + ", and for it to die of SIGKILL", limit);
        }
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            throw std::system_error(errno, std::generic_category(),
                                    "waitpid for child " + std::to_string(pid));
        }
    }
    if (!exited) {
        throwWaitTimedOut(what + " (killed it)", limit);
    }
    return status;
}

IdleThread::IdleThread()
    : thread_([this] {
          tid_ = static_cast<pid_t>(::gettid());
          while (!done_) {
              std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
      }) {
    while (tid_ == 0) {
        std::this_thread::yield();
    }
}

IdleThread::~IdleThread() {
    done_ = true;
    thread_.join();
}

void runAsUser(uid_t uid, gid_t gid, const std::function<void()>& fn) {
    std::exception_ptr error;
    std::thread thread([&] {
        try {
            // Raw syscalls: glibc's wrappers would change every thread of the process.
            if (::syscall(SYS_setgroups, 0, nullptr) < 0 ||
                ::syscall(SYS_setresgid, gid, gid, gid) < 0 ||
                ::syscall(SYS_setresuid, uid, uid, uid) < 0) {
                throw std::system_error(errno, std::generic_category(), "drop credentials");
            }
            fn();
        } catch (...) {
            error = std::current_exception();
        }
    });
    thread.join();
    if (error) {
        std::rethrow_exception(error);
    }
}

int countFds(pid_t pid) {
    std::string path = "/proc/" + std::to_string(pid) + "/fd";
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) {
        return -1;
    }
    int count = 0;
    while (struct dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] != '.') {
            ++count;
        }
    }
    ::closedir(dir);
    return count;
}

int openFdCount() {
    return countFds(::getpid()) - 1;  // the directory's own fd
}

namespace {

std::set<pid_t>& longLivedChildren() {
    static std::set<pid_t> pids;
    return pids;
}

// Our children, from every thread's /proc/self/task/TID/children.
std::set<pid_t> childrenOfThisProcess() {
    std::set<pid_t> out;
    DIR* tasks = ::opendir("/proc/self/task");
    if (tasks == nullptr) {
        return out;
    }
    while (struct dirent* task = ::readdir(tasks)) {
        if (task->d_name[0] == '.') {
            continue;
        }
        std::ifstream children(std::string("/proc/self/task/") + task->d_name + "/children");
        for (pid_t pid = 0; children >> pid;) {
            out.insert(pid);
        }
    }
    ::closedir(tasks);
    return out;
}

}  // namespace

void allowLongLivedChild(pid_t pid) {
    longLivedChildren().insert(pid);
}

void LeakCheckedTest::SetUp() {
    fdsAtStart_ = openFdCount();
}

namespace {

std::string describeOpenFds() {
    std::string out;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) {
        return out;
    }
    while (struct dirent* entry = ::readdir(dir)) {
        char target[256] = {};
        std::string link = std::string("/proc/self/fd/") + entry->d_name;
        if (entry->d_name[0] != '.' && ::readlink(link.c_str(), target, sizeof(target) - 1) > 0) {
            out += std::string(" ") + entry->d_name + "=" + target;
        }
    }
    ::closedir(dir);
    return out;
}

}  // namespace

void LeakCheckedTest::TearDown() {
    if (fdsAtStart_ < 0) {
        return;  // a fixture skipped before the count began: nothing to compare with
    }
    EXPECT_EQ(openFdCount(), fdsAtStart_)
        << "the test left an fd open; open now:" << describeOpenFds();
    for (pid_t pid : childrenOfThisProcess()) {
        EXPECT_TRUE(longLivedChildren().count(pid) > 0)
            << "the test left child " << pid << " running or unreaped";
    }
}

int errnoOf(const std::function<void()>& fn, std::string* message) {
    try {
        fn();
    } catch (const std::system_error& e) {
        if (message != nullptr) {
            *message = e.what();
        }
        return e.code().category() == std::generic_category() ? e.code().value() : -1;
    }
    return 0;
}

}  // namespace nsfd::test
