// SPDX-License-Identifier: LGPL-2.1-or-later
#include "harness.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

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

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
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

[[noreturn]] void execOrDie(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const std::string& arg : argv) {
        args.push_back(const_cast<char*>(arg.c_str()));
    }
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
}

// NSFD_TEST_DAEMON_WRAPPER: a command every nsfdd runs under, split at spaces
// (CI runs the integration tests once with valgrind's memcheck there).
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

std::mutex& forkLock() {
    static std::mutex lock;
    return lock;
}

int reap(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

std::string readAll(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return out;
        }
        out.append(buf, static_cast<std::size_t>(n));
    }
}

}  // namespace

TestBus::TestBus() : dir_(makeTempDir()) {
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
        ::dup2(devNull, 1);         // never hold the test runner's output open
        ::dup2(writeEnd.get(), 3);  // dup2 clears close-on-exec on the copy
        execOrDie({"dbus-daemon", "--config-file=" + dir_ + "/bus.conf", "--nofork", "--nopidfile",
                   "--print-address=3"});
    }
    writeEnd.reset();
    std::string line;
    char c;
    while (::read(readEnd.get(), &c, 1) == 1 && c != '\n') {
        line += c;
    }
    if (line.empty()) {
        throw std::runtime_error("dbus-daemon did not start");
    }
    address_ = line;
    allowLongLivedChild(pid_);
}

TestBus::~TestBus() {
    kill();
    ::unlink((dir_ + "/bus.conf").c_str());
    ::unlink((dir_ + "/system_bus_socket").c_str());
    ::rmdir(dir_.c_str());
}

void TestBus::kill() {
    if (pid_ > 0) {
        ::kill(pid_, SIGTERM);
        reap(pid_);
        pid_ = -1;
    }
}

Daemon::Daemon(const std::string& busAddress, Options options) : dir_(makeTempDir()) {
    FdStore& handOver = options.handOver;
    writeFile(dir_ + "/nsfdd.conf", options.config);
    std::string socketPath = dir_ + "/notify";
    notify_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
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
        int log = ::open((dir_ + "/log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
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
                if (byNumber[i].first != target) {
                    ::dup2(byNumber[i].first, target);  // the copy is not close-on-exec
                    ::close(byNumber[i].first);
                } else {
                    ::fcntl(target, F_SETFD, 0);
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
        execOrDie(argv);
    }
    execWrite.reset();
    char none;
    while (::read(execRead.get(), &none, 1) < 0 && errno == EINTR) {
    }
    execAt_ = std::chrono::steady_clock::now();
    store_ = std::move(handOver);  // systemd keeps what it hands over
    reader_ = std::thread([this] { readContinuously(); });
    bool ready = false;
    {
        std::unique_lock lock(mutex_);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
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
        std::string why = log();
        stop();
        stopReading();
        throw std::runtime_error("nsfdd did not get ready: " + why);
    }
}

Daemon::~Daemon() {
    if (pid_ > 0) {
        stop();
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
            std::scoped_lock lock(forkLock(), mutex_);
            receiveNotificationLocked();
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
    struct pollfd pfd = {notify_.get(), POLLIN, 0};
    while (::poll(&pfd, 1, 0) > 0) {
        receiveNotificationLocked();
    }
}

void Daemon::receiveNotificationLocked() {
    char buf[4096];
    struct iovec iov = {buf, sizeof(buf) - 1};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(notify_.get(), &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0) {
        return;
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
    reap(pid_);
    pid_ = -1;
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
    int status = reap(pid_);  // the reader keeps its notify socket from filling meanwhile
    pid_ = -1;
    return status;
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
    std::lock_guard lock(forkLock());
    return ::fork();
}

std::pair<int, std::string> forkAndRead(const std::function<void(int)>& child) {
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
    std::string out = readAll(readEnd.get());
    return {reap(pid), out};
}

std::pair<int, std::string> run(const std::vector<std::string>& argv) {
    return forkAndRead([&](int out) {
        ::dup2(out, 1);
        execOrDie(argv);
    });
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
