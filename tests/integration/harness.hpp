// SPDX-License-Identifier: LGPL-2.1-or-later
// A real private bus and a real nsfdd for the integration tests.
#pragma once

#include <sdbus-c++/sdbus-c++.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "child.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::test {

// A dbus-daemon of type system, with nsfd's own policy file, run as our child.
enum class BusKind {
    DbusDaemon,  // what the tests use
    DbusBroker,  // dbus-broker-launch (package dbus-broker): NSFD_TEST_BUS=dbus-broker, benchmarks
};

class TestBus {
  public:
    explicit TestBus(BusKind kind = BusKind::DbusDaemon);
    ~TestBus();
    // Whether dbus-broker-launch is installed.
    static bool brokerInstalled();
    const std::string& address() const { return address_; }
    pid_t pid() const { return pid_; }
    // The process that routes messages: dbus-daemon, or the broker under its
    // launcher (once a client has connected).
    pid_t routerPid() const;
    void kill();

  private:
    void startBroker();

    std::string dir_;
    std::string address_;
    pid_t pid_ = -1;
    UniqueFd journal_;  // dbus-broker-launch's journal, read and forgotten
    std::thread journalReader_;
    std::atomic<bool> stopping_{false};
};

// What the tests set NSFD_VARLINK_SOCKET to: nothing listens there, so
// Client::system() and nsfdctl use the test bus.
inline constexpr const char* kNoVarlinkSocket = "/nonexistent/nsfd-tests-use-the-bus";

// nsfdd as our child, told about with NOTIFY_SOCKET, on the given bus.

class Daemon {
  public:
    using FdStore = std::map<std::string, UniqueFd>;

    struct Options {
        std::string config;  // the text of its nsfdd.conf
        // Plays systemd's side of a restart: these arrive as LISTEN_FDS/LISTEN_FDNAMES.
        FdStore handOver;
        std::string logLevel = "debug";
        rlim_t fdLimit = 0;   // if set, its RLIMIT_NOFILE (soft and hard)
        std::string varlink;  // if set, it serves Varlink on a socket it binds here (--varlink)
    };

    // Starts nsfdd and waits for READY=1 (throws WaitTimedOut after kWaitLimit).
    // Its FDSTORE messages are collected. While it exists, a WaitTimedOut of
    // any helper carries its log.
    Daemon(const std::string& busAddress, Options options);
    explicit Daemon(const std::string& busAddress, const std::string& config = "")
        : Daemon(busAddress, Options{config, {}, "debug", 0, ""}) {}
    ~Daemon();

    pid_t pid() const { return pid_; }
    // From its execve(2) to its READY=1.
    std::chrono::nanoseconds startupTime() const { return readyAt_ - execAt_; }
    int openFdCount() const;
    std::string log() const;
    // The last STATUS= it sent.
    std::string lastStatus();
    // How many of its notifications so far were exactly `line` (e.g. "STOPPING=1").
    std::size_t notificationsOf(const std::string& line);
    // SIGTERM and reap; the wait status. Throws WaitTimedOut, with its log,
    // if it has not exited after kWaitLimit (it is then killed).
    int stop();
    // SIGKILL and reap.
    void kill9();
    // What it keeps in the store (FDSTORE=1 and not removed), by FDNAME.
    std::size_t fdStoreSize();
    std::vector<std::string> fdStoreNames();
    // The store, as systemd hands it to the next nsfdd (after kill9() or stop()).
    FdStore takeFdStore();
    // Waits for it to exit by itself; the wait status, or -1 after `timeout`.
    int awaitExit(std::chrono::milliseconds timeout);

  private:
    // Reads its notifications as they come, as systemd does: nsfdd blocks
    // when its notify socket is full (10 messages here).
    void readContinuously();
    void stopReading();
    // Takes what is queued on the notify socket, never waiting; with mutex_ held.
    void drainLocked();
    // One message, if one is queued; false if none is.
    bool receiveNotificationLocked();

    // Its log is listed, for the message of a wait that times out, while it exists.
    class LogListing {
      public:
        explicit LogListing(std::string path);
        ~LogListing();
        LogListing(const LogListing&) = delete;
        LogListing& operator=(const LogListing&) = delete;

      private:
        std::string path_;
    };

    std::string dir_;
    LogListing listing_;
    UniqueFd notify_;
    std::string notifications_;
    FdStore store_;
    pid_t pid_ = -1;
    std::chrono::steady_clock::time_point execAt_;
    std::chrono::steady_clock::time_point readyAt_;
    std::mutex mutex_;  // guards notifications_, store_, readyAt_
    std::condition_variable notified_;
    std::atomic<bool> stopReading_{false};
    std::thread reader_;
};

// Runs nsfdd with `args` to completion: {wait status, stderr}.
std::pair<int, std::string> runDaemonOnce(const std::vector<std::string>& args);

// fork(2), but never while a Daemon's notification reader thread may hold an
// allocator lock: with GCC 12's ASan, a child forked at that moment deadlocks
// in its first malloc. Every fork of the tests goes through here. Throws
// WaitTimedOut if the lock is not free within kWaitLimit.
pid_t forkProcess();

// All of `bytes` on a Unix socket, `fds` as SCM_RIGHTS with the first byte
// (varlink/socket_io.hpp's sendWithFds, waiting while the socket is full).
// False once the peer hung up or after 30 s.
bool sendAllWithFds(int socket, std::string_view bytes, const std::vector<int>& fds = {});

// Forks; the child runs `child(fd)` with the write end of a pipe and must not
// return. The parent reads the pipe to its end and reaps: {wait status, output}.
// Throws WaitTimedOut, naming `what`, if that takes over kWaitLimit.
std::pair<int, std::string> forkAndRead(const std::function<void(int)>& child,
                                        const std::string& what = "a forked child");

// A forked child that reports one line on a pipe and lives on, holding what
// it opened (bus or Varlink connections), until released or destroyed: the
// shape of the bounds tests' crowds. `body(report)` runs in the child and
// writes its line, ending in '\n', to `report`; it keeps the child alive
// itself (reportAndStay), or the child exits when it returns.
class ReportingChild {
  public:
    explicit ReportingChild(const std::function<void(int report)>& body);
    ~ReportingChild();  // SIGKILL and reap, unless released
    ReportingChild(const ReportingChild&) = delete;
    ReportingChild& operator=(const ReportingChild&) = delete;

    // The child's line without its '\n' ("" if it ended without one). Throws
    // WaitTimedOut, naming `what`, after kWaitLimit.
    std::string awaitLine(const std::string& what);
    // SIGTERM, then reaps. Throws WaitTimedOut, naming `what`, after kWaitLimit.
    void release(const std::string& what);

  private:
    pid_t pid_ = -1;
    UniqueFd report_;
};

// In a ReportingChild: writes `line` and a '\n' to `report`, then waits to be
// killed, keeping everything the caller holds open.
[[noreturn]] void reportAndStay(int report, const std::string& line);

// The whole of a file ("" if it cannot be read).
std::string readFile(const std::string& path);
// VmRSS of a process, in KiB (0 if it is gone).
long rssKiB(pid_t pid);

// The bus of the integration tests: dbus-daemon, or dbus-broker with
// NSFD_TEST_BUS=dbus-broker.
BusKind testBusKind();
// The address of that bus (one bus per test program).
const std::string& busAddress();
std::unique_ptr<sdbus::IConnection> connectToBus();

// Processes the connection's messages until `done` or `timeout`.
bool waitUntil(sdbus::IConnection& connection, const std::function<bool()>& done,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Runs `fn` in a forked child that has dropped to uid/gid (and `groups`) and has
// its own bus connection; returns what fn returned, or "error:NAME: message" if
// it threw sdbus::Error.
std::string asUser(uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                   const std::function<std::string(sdbus::IConnection&)>& fn);

// As the process of a rootless container or a flatpak/bwrap sandbox, from
// the calling process (already `uid`/`gid`): unshare(2)s a user namespace
// mapping root to `uid` and a pid namespace, then forks; returns true in the
// child, the init of the new pid namespace. The caller waits for it and exits
// with its status, never returning. False if a step fails (nothing forked).
bool enterSandbox(uid_t uid, gid_t gid);

// asUser(), but `fn` runs in a sandbox of the user (enterSandbox()): pid 1 of
// a pid namespace of its own, root in a user namespace of its own.
std::string asSandboxedUser(uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                            const std::function<std::string(sdbus::IConnection&)>& fn);

// Runs a command to completion: {wait status, stdout}.
std::pair<int, std::string> run(const std::vector<std::string>& argv);

// The D-Bus error name `fn` fails with, "" if it does not fail.
std::string errorNameOf(const std::function<void()>& fn);

}  // namespace nsfd::test
