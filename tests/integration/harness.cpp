// SPDX-License-Identifier: LGPL-2.1-or-later
#include "harness.hpp"

#include <poll.h>

#include <span>

#include "varlink/socket_io.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

namespace nsfd::test {

namespace {

std::string makeTempDir() {
    char pattern[] = "/tmp/nsfd-test.XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "mkdtemp");
    }
    ::chmod(pattern, 0755);  // other users must reach the bus socket
    return pattern;
}

void writeFile(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
}

std::string replaceAll(std::string text, const std::string& from, const std::string& to) {
    for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at)) {
        text.replace(at, from.size(), to);
        at += to.size();
    }
    return text;
}

// In a child: `fd` as number `target`, kept across the exec (dup2 of an fd
// onto itself would leave close-on-exec set).
void inheritAs(int fd, int target) {
    if (fd == target) {
        ::fcntl(target, F_SETFD, 0);
    } else {
        ::dup2(fd, target);
    }
}

[[noreturn]] void execOrDie(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const std::string& arg : argv) {
        args.push_back(const_cast<char*>(arg.c_str()));
    }
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
}

// NSFD_TEST_DAEMON_WRAPPER: a command every nsfdd runs under, split at spaces
// (a debugger, strace, or a memory checker that can run nsfdd).
std::vector<std::string> daemonWrapper() {
    std::vector<std::string> words;
    if (const char* wrapper = std::getenv("NSFD_TEST_DAEMON_WRAPPER")) {
        std::istringstream in(wrapper);
        for (std::string word; in >> word;) {
            words.push_back(word);
        }
    }
    return words;
}

std::timed_mutex& forkLock() {
    static std::timed_mutex lock;
    return lock;
}

using Clock = std::chrono::steady_clock;

int msUntil(Clock::time_point deadline) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 1000 * 1000));
}

// Reads `fd` to its end, or until `stop` (a line's end, say) holds of what was
// read; false if that takes past `deadline`.
bool readUntil(int fd, std::string& out, Clock::time_point deadline,
               const std::function<bool(const std::string&)>& stop = nullptr) {
    char buf[4096];
    while (!stop || !stop(out)) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int ready = ::poll(&pfd, 1, msUntil(deadline));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            return false;
        }
        // One byte at a time while looking for a line: the rest is not ours.
        ssize_t n = ::read(fd, buf, stop ? 1 : sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return true;
        }
        out.append(buf, static_cast<std::size_t>(n));
    }
    return true;
}

// The last `lines` lines of `text`.
std::string tail(const std::string& text, std::size_t lines) {
    std::size_t at = text.size();
    for (std::size_t n = 0; n <= lines && at != std::string::npos && at > 0; ++n) {
        at = text.rfind('\n', at - 1);
    }
    return at == std::string::npos || at == 0 ? text : text.substr(at + 1);
}

// The nsfdd logs of the Daemons that exist, for the message of a wait that
// timed out: whatever the test waited for, nsfdd's side is what explains it.
struct DaemonLogs {
    std::mutex mutex;
    std::multiset<std::string> paths;
};

DaemonLogs& daemonLogs() {
    static DaemonLogs logs;
    return logs;
}

std::string describeDaemonLogs() {
    DaemonLogs& logs = daemonLogs();
    std::lock_guard lock(logs.mutex);
    std::string out;
    for (const std::string& path : logs.paths) {
        constexpr std::size_t kLines = 200;
        out += "---- " + path + " (its last " + std::to_string(kLines) + " lines) ----\n" +
               tail(readFile(path), kLines);
    }
    return out.empty() ? "(no nsfdd running)\n" : out;
}

// Registered at start; a throw here ends the test binary, as it should.
// NOLINTNEXTLINE(cert-err58-cpp)
const bool kReportsDaemonLogs = []() noexcept {
    setWaitTimedOutReport(describeDaemonLogs);
    return true;
}();

UniqueFd boundUnixSocket(int type, const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    if (fd.get() < 0 || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
        throw std::system_error(errno, std::generic_category(), "bind " + path);
    }
    return fd;
}

// In a child about to become dbus-broker-launch, which refuses to start
// without a journal: a private /run/systemd whose journal socket is `sink`,
// which the parent reads.
void giveBrokerAJournal(int sink) {
    ::mkdir("/run/systemd", 0755);
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::string("/run/systemd/journal/socket").copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    if (::unshare(CLONE_NEWNS) < 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
        ::mount("tmpfs", "/run/systemd", "tmpfs", 0, "mode=0755") < 0 ||
        ::mkdir("/run/systemd/journal", 0755) < 0 ||
        ::bind(sink, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
        ::_exit(126);
    }
}

}  // namespace

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

long rssKiB(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string key;
    long value = 0;
    while (in >> key) {
        if (key == "VmRSS:" && in >> value) {
            return value;
        }
        in.ignore(4096, '\n');
    }
    return 0;
}

bool TestBus::brokerInstalled() {
    return ::access("/usr/bin/dbus-broker-launch", X_OK) == 0;
}

TestBus::TestBus(BusKind kind) : dir_(makeTempDir()) {
    if (kind == BusKind::DbusBroker) {
        startBroker();
        return;
    }
    std::string socket = dir_ + "/system_bus_socket";
    std::string config = readFile(NSFD_TEST_BUS_CONFIG_TEMPLATE);
    config = replaceAll(config, "@SOCKET@", socket);
    config = replaceAll(config, "@POLICY@", NSFD_TEST_POLICY_FILE);
    writeFile(dir_ + "/bus.conf", config);

    int pipeFds[2];
    if (::pipe2(pipeFds, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
    pid_ = forkProcess();
    if (pid_ == 0) {
        int devNull = ::open("/dev/null", O_RDWR);
        ::dup2(devNull, 0);
        ::dup2(devNull, 1);  // never hold the test runner's output open
        inheritAs(writeEnd.get(), 3);
        execOrDie({"dbus-daemon", "--config-file=" + dir_ + "/bus.conf", "--nofork", "--nopidfile",
                   "--print-address=3"});
    }
    writeEnd.reset();
    allowLongLivedChild(pid_);
    std::string line;
    if (!readUntil(readEnd.get(), line, Clock::now() + kWaitLimit,
                   [](const std::string& text) { return text.find('\n') != std::string::npos; })) {
        kill();
        throwWaitTimedOut("dbus-daemon to print its address");
    }
    if (line.empty() || line.back() != '\n') {
        kill();
        throw std::runtime_error("dbus-daemon did not start");
    }
    line.pop_back();
    address_ = line;
}

void TestBus::startBroker() {
    std::string socket = dir_ + "/system_bus_socket";
    std::string config = readFile(NSFD_TEST_BUS_CONFIG_TEMPLATE);
    config = replaceAll(config, "@SOCKET@", socket);
    config = replaceAll(config, "@POLICY@", NSFD_TEST_POLICY_FILE);
    writeFile(dir_ + "/bus.conf", config);
    // Socket activation, as systemd would do it: clients may connect at once
    // and wait in the backlog until the broker takes them.
    UniqueFd listening = boundUnixSocket(SOCK_STREAM, socket);
    ::chmod(socket.c_str(), 0666);
    if (::listen(listening.get(), SOMAXCONN) < 0) {
        throw std::system_error(errno, std::generic_category(), "listen");
    }
    address_ = "unix:path=" + socket;
    journal_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    // The broker's messages (MESSAGE= lines) go to broker.log, for whoever debugs.
    journalReader_ =
        std::thread([this, log = UniqueFd(::open((dir_ + "/broker.log").c_str(),
                                                 O_WRONLY | O_CREAT | O_CLOEXEC | O_TRUNC, 0644))] {
            char entry[65536];
            while (!stopping_) {
                ssize_t n = ::recv(journal_.get(), entry, sizeof(entry) - 1, 0);
                if (n < 0 && errno != EINTR) {
                    return;
                }
                entry[n > 0 ? n : 0] = '\0';
                if (const char* message = std::strstr(entry, "MESSAGE=")) {
                    const char* end = std::strchr(message, '\n');
                    std::size_t length = end != nullptr
                                             ? static_cast<std::size_t>(end - message) + 1
                                             : std::strlen(message);
                    (void)!::write(log.get(), message + 8, length - 8);
                }
            }
        });
    pid_ = forkProcess();
    if (pid_ == 0) {
        int devNull = ::open("/dev/null", O_RDWR);
        ::dup2(devNull, 0);
        ::dup2(devNull, 1);
        ::dup2(devNull, 2);
        giveBrokerAJournal(journal_.get());
        inheritAs(listening.get(), 3);
        ::setenv("LISTEN_FDS", "1", 1);
        ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
        ::unsetenv("LISTEN_FDNAMES");
        ::unsetenv("NOTIFY_SOCKET");
        // The launcher is also a client of the bus it launches.
        ::setenv("DBUS_SYSTEM_BUS_ADDRESS", address_.c_str(), 1);
        execOrDie({"dbus-broker-launch", "--scope", "system", "--config-file", dir_ + "/bus.conf"});
    }
    allowLongLivedChild(pid_);
}

pid_t TestBus::routerPid() const {
    // Among dbus-broker-launch's children (its journal's reader too), the broker.
    std::ifstream children("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) +
                           "/children");
    for (pid_t child = 0; children >> child;) {
        if (readFile("/proc/" + std::to_string(child) + "/comm") == "dbus-broker\n") {
            return child;
        }
    }
    return pid_;
}

TestBus::~TestBus() {
    kill();
    ::unlink((dir_ + "/broker.log").c_str());
    ::unlink((dir_ + "/bus.conf").c_str());
    ::unlink((dir_ + "/system_bus_socket").c_str());
    ::rmdir(dir_.c_str());
}

void TestBus::kill() {
    if (pid_ > 0) {
        // The broker first: its launcher then collects it and exits.
        if (pid_t router = routerPid(); router != pid_) {
            ::kill(router, SIGTERM);
            awaitChildExit(pid_, std::chrono::seconds(2));
        }
        ::kill(pid_, SIGTERM);  // if it is still there
        try {
            reapWithin(pid_, "the bus (pid " + std::to_string(pid_) + ") to exit after SIGTERM");
        } catch (const std::exception& e) {
            ADD_FAILURE() << e.what();
        }
        pid_ = -1;
    }
    if (journalReader_.joinable()) {
        stopping_ = true;
        ::shutdown(journal_.get(), SHUT_RDWR);
        journalReader_.join();
    }
}

Daemon::LogListing::LogListing(std::string path) : path_(std::move(path)) {
    DaemonLogs& logs = daemonLogs();
    std::lock_guard lock(logs.mutex);
    logs.paths.insert(path_);
}

Daemon::LogListing::~LogListing() {
    DaemonLogs& logs = daemonLogs();
    std::lock_guard lock(logs.mutex);
    logs.paths.erase(logs.paths.find(path_));
}

Daemon::Daemon(const std::string& busAddress, Options options)
    : dir_(makeTempDir()), listing_(dir_ + "/log") {
    FdStore& handOver = options.handOver;
    writeFile(dir_ + "/nsfdd.conf", options.config);
    std::string socketPath = dir_ + "/notify";
    // Non-blocking: a reader that finds it empty goes back to poll(2) rather
    // than wait, holding its locks, for a message that may never come.
    notify_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    socketPath.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    if (::bind(notify_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
        throw std::system_error(errno, std::generic_category(), "bind notify socket");
    }
    // Its write end closes at the execve: the moment the startup time counts from.
    int execPipe[2];
    if (::pipe2(execPipe, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    UniqueFd execRead(execPipe[0]), execWrite(execPipe[1]);
    pid_ = forkProcess();
    if (pid_ == 0) {
        // Nothing of the test runner's reaches nsfdd: no stdin, stdout or stray fds.
        ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        int devNull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        ::dup2(devNull, 0);
        ::dup2(devNull, 1);
        int log = ::open((dir_ + "/log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ::dup2(log, 2);
        ::setenv("NOTIFY_SOCKET", socketPath.c_str(), 1);
        if (options.fdLimit != 0) {
            struct rlimit limit = {options.fdLimit, options.fdLimit};
            ::setrlimit(RLIMIT_NOFILE, &limit);
        }
        if (!handOver.empty()) {
            // Down to 3, 4, ... as systemd passes them, in the order of their
            // numbers: the i-th lowest is at or above 3 + i, so no move lands on
            // one not yet moved, and no more fds are needed than there are.
            // The exec pipe goes above them all first (a close-on-exec copy).
            (void)::fcntl(execWrite.get(), F_DUPFD_CLOEXEC, static_cast<int>(3 + handOver.size()));
            std::vector<std::pair<int, std::string>> byNumber;
            for (auto& [name, fd] : handOver) {
                byNumber.emplace_back(fd.get(), name);
            }
            std::sort(byNumber.begin(), byNumber.end());
            std::string names;
            for (std::size_t i = 0; i < byNumber.size(); ++i) {
                int target = static_cast<int>(3 + i);
                inheritAs(byNumber[i].first, target);
                if (byNumber[i].first != target) {
                    ::close(byNumber[i].first);
                }
                names += (names.empty() ? "" : ":") + byNumber[i].second;
            }
            ::setenv("LISTEN_FDS", std::to_string(byNumber.size()).c_str(), 1);
            ::setenv("LISTEN_FDNAMES", names.c_str(), 1);
            ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
        }
        std::vector<std::string> argv = daemonWrapper();
        argv.insert(argv.end(), {NSFD_TEST_DAEMON, "--bus", busAddress, "--config",
                                 dir_ + "/nsfdd.conf", "--log-level", options.logLevel});
        if (!options.varlink.empty()) {
            argv.insert(argv.end(), {"--varlink", options.varlink});
        }
        execOrDie(argv);
    }
    execWrite.reset();
    std::string none;
    if (!readUntil(execRead.get(), none, Clock::now() + kWaitLimit)) {
        ::kill(pid_, SIGKILL);
        reapWithin(pid_, "nsfdd to die of SIGKILL");
        pid_ = -1;
        throwWaitTimedOut("nsfdd's fork to exec " NSFD_TEST_DAEMON);
    }
    execAt_ = std::chrono::steady_clock::now();
    store_ = std::move(handOver);  // systemd keeps what it hands over
    reader_ = std::thread([this] { readContinuously(); });
    bool ready = false;
    {
        std::unique_lock lock(mutex_);
        auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
        while (!ready && std::chrono::steady_clock::now() < deadline) {
            ready = notified_.wait_for(lock, std::chrono::milliseconds(50), [&] {
                return notifications_.find("READY=1") != std::string::npos;
            });
            if (!ready && ::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;  // it exited
                break;
            }
        }
    }
    if (!ready) {
        stopReading();
        if (pid_ <= 0) {
            throw std::runtime_error("nsfdd exited before it got ready: " + log());
        }
        std::string what = "READY=1 from nsfdd (pid " + std::to_string(pid_) + ")";
        ::kill(pid_, SIGKILL);
        reapWithin(std::exchange(pid_, -1), "nsfdd to die of SIGKILL");
        throwWaitTimedOut(what);
    }
}

Daemon::~Daemon() {
    if (pid_ > 0) {
        try {
            stop();
        } catch (const std::exception& e) {
            ADD_FAILURE() << e.what();
        }
    }
    stopReading();
    for (const char* name : {"/nsfdd.conf", "/notify", "/log"}) {
        ::unlink((dir_ + name).c_str());
    }
    ::rmdir(dir_.c_str());
}

void Daemon::readContinuously() {
    while (!stopReading_) {
        struct pollfd pfd = {notify_.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 20) > 0) {
            // What woke the poll may be gone by now (drainLocked() on another
            // thread): take only what is there.
            std::scoped_lock lock(forkLock(), mutex_);
            drainLocked();
            notified_.notify_all();
        }
    }
}

void Daemon::stopReading() {
    stopReading_ = true;
    if (reader_.joinable()) {
        reader_.join();
    }
}

void Daemon::drainLocked() {
    while (receiveNotificationLocked()) {
    }
}

bool Daemon::receiveNotificationLocked() {
    char buf[4096];
    struct iovec iov = {buf, sizeof(buf) - 1};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n;
    do {
        n = ::recvmsg(notify_.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return false;  // EAGAIN: nothing queued
    }
    std::vector<UniqueFd> fds;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                fds.emplace_back(fd);
            }
        }
    }
    std::string text(buf, static_cast<std::size_t>(n));
    if (text.find("READY=1") != std::string::npos) {
        readyAt_ = std::chrono::steady_clock::now();
    }
    notifications_ += text + '\n';
    std::string name;
    if (std::size_t at = text.find("FDNAME="); at != std::string::npos) {
        name = text.substr(at + 7, text.find('\n', at) - at - 7);
    }
    if (text.find("FDSTORE=1") != std::string::npos && fds.size() == 1) {
        store_[name] = std::move(fds[0]);
    } else if (text.find("FDSTOREREMOVE=1") != std::string::npos) {
        store_.erase(name);
    }
    return true;
}

std::size_t Daemon::fdStoreSize() {
    std::lock_guard lock(mutex_);
    drainLocked();
    return store_.size();
}

std::vector<std::string> Daemon::fdStoreNames() {
    std::lock_guard lock(mutex_);
    drainLocked();
    std::vector<std::string> names;
    for (const auto& [name, fd] : store_) {
        names.push_back(name);
    }
    return names;
}

Daemon::FdStore Daemon::takeFdStore() {
    std::lock_guard lock(mutex_);
    drainLocked();
    return std::move(store_);
}

void Daemon::kill9() {
    ::kill(pid_, SIGKILL);
    pid_t pid = std::exchange(pid_, -1);
    reapWithin(pid, "nsfdd (pid " + std::to_string(pid) + ") to die of SIGKILL");
}

std::string Daemon::lastStatus() {
    std::lock_guard lock(mutex_);
    drainLocked();
    std::size_t at = notifications_.rfind("STATUS=");
    if (at == std::string::npos) {
        return "";
    }
    std::size_t end = notifications_.find('\n', at);
    return notifications_.substr(at + 7, end - at - 7);
}

std::size_t Daemon::notificationsOf(const std::string& line) {
    std::lock_guard lock(mutex_);
    drainLocked();
    std::size_t count = 0;
    std::istringstream lines(notifications_);
    for (std::string each; std::getline(lines, each);) {
        count += each == line ? 1 : 0;
    }
    return count;
}

int Daemon::openFdCount() const {
    return countFds(pid_);
}

std::string Daemon::log() const {
    return readFile(dir_ + "/log");
}

int Daemon::stop() {
    if (pid_ <= 0) {
        return -1;
    }
    ::kill(pid_, SIGTERM);
    // The reader keeps its notify socket from filling meanwhile. Past the
    // limit, nsfdd's log is in the message, and it is killed.
    pid_t pid = std::exchange(pid_, -1);
    return reapWithin(pid, "nsfdd (pid " + std::to_string(pid) + ") to exit after SIGTERM");
}

int Daemon::awaitExit(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            return status;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
}

std::pair<int, std::string> runDaemonOnce(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {NSFD_TEST_DAEMON};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.begin(), {"sh", "-c", "exec \"$@\" 2>&1", "sh"});
    return run(argv);
}

bool waitUntil(sdbus::IConnection& connection, const std::function<bool()>& done,
               std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        while (connection.processPendingRequest()) {
        }
        if (done()) {
            return true;
        }
        sdbus::IConnection::PollData data = connection.getEventLoopPollData();
        struct pollfd pfd = {data.fd, data.events, 0};
        int wait = data.getPollTimeout();
        ::poll(&pfd, 1, wait < 0 || wait > 50 ? 50 : wait);
    }
    return true;
}

pid_t forkProcess() {
    std::unique_lock lock(forkLock(), std::defer_lock);
    if (!lock.try_lock_for(kWaitLimit)) {
        throwWaitTimedOut("the fork lock, which a Daemon's notification reader holds");
    }
    return ::fork();
}

bool sendAllWithFds(int socket, std::string_view bytes, const std::vector<int>& fds) {
    std::span<const int> pending(fds);
    while (!bytes.empty()) {
        iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
        ssize_t n = varlink::sendWithFds(socket, std::span(&iov, 1), pending);
        if (n == -EAGAIN || n == -EINTR) {
            pollfd p{socket, POLLOUT, 0};
            if (::poll(&p, 1, 30'000) <= 0) {
                return false;
            }
            continue;
        }
        if (n <= 0) {
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
        pending = {};  // sent with the first byte
    }
    return true;
}

std::pair<int, std::string> forkAndRead(const std::function<void(int)>& child,
                                        const std::string& what) {
    int pipeFds[2];
    if (::pipe2(pipeFds, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
    pid_t pid = forkProcess();
    if (pid == 0) {
        child(writeEnd.get());
        ::_exit(127);
    }
    writeEnd.reset();
    std::string out;
    std::string description = what + " (pid " + std::to_string(pid) + ")";
    if (!readUntil(readEnd.get(), out, Clock::now() + kWaitLimit)) {
        ::kill(pid, SIGKILL);
        reapWithin(pid, description + " to die of SIGKILL");
        throwWaitTimedOut(description + " to finish; its output so far: '" + out + "'");
    }
    return {reapWithin(pid, description + " to exit after closing its output"), out};
}

ReportingChild::ReportingChild(const std::function<void(int report)>& body) {
    int pipeFds[2];
    if (::pipe2(pipeFds, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    report_ = UniqueFd(pipeFds[0]);
    UniqueFd writeEnd(pipeFds[1]);
    pid_ = forkProcess();
    if (pid_ == 0) {
        report_.reset();
        body(writeEnd.get());
        ::_exit(0);
    }
}

ReportingChild::~ReportingChild() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
}

std::string ReportingChild::awaitLine(const std::string& what) {
    std::string line;
    if (!readUntil(report_.get(), line, Clock::now() + kWaitLimit,
                   [](const std::string& read) { return read.find('\n') != std::string::npos; })) {
        throwWaitTimedOut(what);
    }
    return line.substr(0, line.find('\n'));
}

void ReportingChild::release(const std::string& what) {
    ::kill(pid_, SIGTERM);
    reapWithin(pid_, what);
    pid_ = -1;
}

void reportAndStay(int report, const std::string& line) {
    std::string text = line + "\n";
    (void)!::write(report, text.data(), text.size());
    for (;;) {
        ::pause();
    }
}

std::pair<int, std::string> run(const std::vector<std::string>& argv) {
    std::string command;
    for (const std::string& arg : argv) {
        command += (command.empty() ? "" : " ") + arg;
    }
    return forkAndRead(
        [&](int out) {
            ::dup2(out, 1);
            execOrDie(argv);
        },
        "'" + command + "'");
}

std::string errorNameOf(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const sdbus::Error& e) {
        return e.getName();
    }
    return "";
}

}  // namespace nsfd::test
