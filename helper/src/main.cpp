// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfd-helper: makes sockets inside a target's network namespace as a caller,
// for nsfdd. It serves one connection (fd 3), from root only, one request at
// a time. Each request goes to a worker: a child that entered the namespace
// and became exactly the caller (enterAndBecome) once, and makes sockets for
// it there while it is used (kept for kIdle after its last request, at most
// kMaxWorkers at once, the least recently used let go first). The helper
// holds the privilege nsfdd's own unit must not (CAP_SYS_ADMIN, CAP_SETUID,
// CAP_SETGID, CAP_SETPCAP) and does nothing else with it.
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "nsfd-helper/become.hpp"
#include "nsfd-helper/protocol.hpp"
#include "spawn.hpp"

namespace nsfd::helper {
namespace {

constexpr std::size_t kMaxWorkers = 16;
constexpr int kIdleSeconds = 3;
// A worker answers at once (socket(2) does not block); one its caller stopped
// (it is that caller's to signal) holds up the others no longer than this.
constexpr int kWorkerTimeoutMs = 1000;

struct Request {
    RequestHeader header;
    gid_t groups[kMaxGroups];
};

// What a worker is asked: socket(2)'s arguments.
struct WorkerRequest {
    std::int32_t family;
    std::int32_t type;
    std::int32_t protocol;
};

// A child in one network namespace as one caller. The namespace is alive
// while the worker is in it, so its inode names it for as long.
struct Worker {
    dev_t dev;
    ino_t ino;
    uid_t uid;
    gid_t gid;
    std::vector<gid_t> groups;
    pid_t pid;
    int fd;  // our end of its SOCK_SEQPACKET socketpair
    time_t lastUsed;
};

std::vector<Worker> workers;

time_t now() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

int answer(int connection, Step step, int error) {
    Reply reply;
    reply.step = step;
    reply.error = error;
    return sendMessage(connection, &reply, sizeof(reply), -1);
}

void stop(Worker& worker) {
    ::close(worker.fd);  // it sees the end and exits
    int status = 0;
    while (::waitpid(worker.pid, &status, 0) < 0 && errno == EINTR) {
    }
}

// The worker's life, in the child: never returns.
[[noreturn]] void workerMain(int fd, const Request& request, int nsFd) {
    // Dies with the helper: nothing outlives a helper that is killed.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || ::getppid() == 1) {
        ::_exit(2);
    }
    const RequestHeader& h = request.header;
    NamespaceToEnter net{nsFd, CLONE_NEWNET};
    Identity identity{h.uid, h.gid, {request.groups, h.groupCount}};
    Step step = enterAndBecome({&net, 1}, identity);
    if (step != Step::None) {
        Reply reply;
        reply.step = step;
        reply.error = errno;
        WorkerRequest ignored{};
        int none = -1;
        (void)receiveMessage(fd, &ignored, sizeof(ignored), &none, 0);
        ::_exit(sendMessage(fd, &reply, sizeof(reply), -1) == 0 ? 0 : 1);
    }
    ::close(nsFd);
    for (;;) {
        WorkerRequest ask{};
        int none = -1;
        ssize_t n = receiveMessage(fd, &ask, sizeof(ask), &none, 0);
        if (none >= 0) {
            ::close(none);
        }
        if (n != static_cast<ssize_t>(sizeof(ask))) {
            ::_exit(0);  // the helper let it go (or broke the protocol)
        }
        Reply reply;
        int made = ::socket(ask.family, ask.type | SOCK_CLOEXEC, ask.protocol);
        if (made < 0) {
            reply.step = Step::Socket;
            reply.error = errno;
        }
        if (sendMessage(fd, &reply, sizeof(reply), made) < 0) {
            ::_exit(1);
        }
        if (made >= 0) {
            ::close(made);
        }
    }
}

// A new worker for this request's caller and namespace; nullptr if it could not fork.
Worker* startWorker(int connection, const Request& request, int nsFd, const struct stat& ns) {
    if (workers.size() >= kMaxWorkers) {
        auto oldest = std::min_element(workers.begin(), workers.end(),
                                       [](auto& a, auto& b) { return a.lastUsed < b.lastUsed; });
        stop(*oldest);
        workers.erase(oldest);
    }
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
        return nullptr;
    }
    pid_t pid = ::fork();
    if (pid == 0) {
        // Only its own end: nsfdd must see the helper's end when the helper goes.
        ::close(connection);
        ::close(pair[0]);
        for (Worker& other : workers) {
            ::close(other.fd);
        }
        workerMain(pair[1], request, nsFd);
    }
    int error = errno;
    ::close(pair[1]);
    if (pid < 0) {
        ::close(pair[0]);
        errno = error;
        return nullptr;
    }
    const RequestHeader& h = request.header;
    workers.push_back(Worker{ns.st_dev, ns.st_ino, h.uid, h.gid,
                             std::vector<gid_t>(request.groups, request.groups + h.groupCount), pid,
                             pair[0], now()});
    return &workers.back();
}

Worker* findWorker(const Request& request, const struct stat& ns) {
    const RequestHeader& h = request.header;
    for (Worker& w : workers) {
        if (w.dev == ns.st_dev && w.ino == ns.st_ino && w.uid == h.uid && w.gid == h.gid &&
            w.groups.size() == h.groupCount &&
            std::equal(w.groups.begin(), w.groups.end(), request.groups)) {
            return &w;
        }
    }
    return nullptr;
}

void forget(Worker* worker) {
    stop(*worker);
    workers.erase(workers.begin() + (worker - workers.data()));
}

// Asks `worker`; forwards its answer to nsfdd. 1: answered; 0: the worker
// failed (forgotten), -1: nsfdd's connection broke.
int ask(int connection, Worker* worker, const RequestHeader& h) {
    WorkerRequest request{h.family, h.type, h.protocol};
    if (sendMessage(worker->fd, &request, sizeof(request), -1) < 0) {
        forget(worker);
        return 0;
    }
    pollfd pfd{worker->fd, POLLIN, 0};
    Reply reply;
    int fd = -1;
    if (::poll(&pfd, 1, kWorkerTimeoutMs) != 1 ||
        receiveMessage(worker->fd, &reply, sizeof(reply), &fd, 0) !=
            static_cast<ssize_t>(sizeof(reply))) {
        if (fd >= 0) {
            ::close(fd);
        }
        forget(worker);
        return 0;
    }
    worker->lastUsed = now();
    int r = sendMessage(connection, &reply, sizeof(reply), fd);
    if (fd >= 0) {
        ::close(fd);
    }
    if (reply.step != Step::None && reply.step != Step::Socket) {
        forget(worker);  // it could not become the caller, and has exited
    }
    return r == 0 ? 1 : -1;
}

// One request: 0 to go on, 1 when nsfdd hung up, -1 on a broken connection.
int serveOne(int connection) {
    static Request request;
    int nsFd = -1;
    ssize_t n = receiveMessage(connection, &request, sizeof(request), &nsFd, 0);
    if (n == 0) {
        return 1;
    }
    if (n < 0) {
        if (n == -EMSGSIZE) {
            return answer(connection, Step::Request, EINVAL) == 0 ? 0 : -1;
        }
        std::fprintf(stderr, "nsfd-helper: Failed to receive a request: %s\n", std::strerror(-n));
        return -1;
    }
    const RequestHeader& h = request.header;
    auto size = static_cast<std::size_t>(n);
    struct stat ns {};
    if (size < sizeof(h) || h.magic != kMagic || h.operation != Operation::OpenSocket ||
        h.groupCount > kMaxGroups || size != sizeof(h) + h.groupCount * sizeof(gid_t) ||
        (h.type & (SOCK_NONBLOCK | SOCK_CLOEXEC)) != 0 || nsFd < 0 || ::fstat(nsFd, &ns) < 0) {
        if (nsFd >= 0) {
            ::close(nsFd);
        }
        return answer(connection, Step::Request, nsFd < 0 ? EBADF : EINVAL) == 0 ? 0 : -1;
    }
    // A kept worker first; if it has gone (its caller may kill it: it is
    // that caller's), a new one.
    if (Worker* kept = findWorker(request, ns)) {
        int r = ask(connection, kept, h);
        if (r != 0) {
            ::close(nsFd);
            return r > 0 ? 0 : -1;
        }
    }
    Worker* fresh = startWorker(connection, request, nsFd, ns);
    int forkError = errno;
    ::close(nsFd);
    if (fresh == nullptr) {
        return answer(connection, Step::Fork, forkError) == 0 ? 0 : -1;
    }
    int r = ask(connection, fresh, h);
    if (r == 0) {
        return answer(connection, Step::Fork, ECHILD) == 0 ? 0 : -1;
    }
    return r > 0 ? 0 : -1;
}

void stopIdleWorkers() {
    time_t cutoff = now() - kIdleSeconds;
    for (auto it = workers.begin(); it != workers.end();) {
        if (it->lastUsed <= cutoff) {
            stop(*it);
            it = workers.erase(it);
        } else {
            ++it;
        }
    }
}

}  // namespace
}  // namespace nsfd::helper

int main() {
    using namespace nsfd::helper;
    int connection = kConnectionFd;
    int type = 0;
    socklen_t length = sizeof(type);
    struct ucred peer {};
    socklen_t peerLength = sizeof(peer);
    if (::getsockopt(connection, SOL_SOCKET, SO_TYPE, &type, &length) < 0 ||
        type != SOCK_SEQPACKET ||
        ::getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &peer, &peerLength) < 0) {
        std::fprintf(stderr, "nsfd-helper: fd %d is not a connection from nsfdd\n", connection);
        return 2;
    }
    // Only root (nsfdd) may have requests served: the socket's mode says so
    // under systemd; this says so wherever the helper runs.
    if (peer.uid != 0) {
        std::fprintf(stderr, "nsfd-helper: refusing a connection from uid %u\n", peer.uid);
        return 2;
    }
    // A connection that begins with Spawn is one run (spawn.cpp); any other
    // serves OpenSocket requests.
    struct {
        std::uint32_t magic;
        Operation operation;
    } first{};
    ssize_t peeked;
    do {
        peeked = ::recv(connection, &first, sizeof(first), MSG_PEEK);
    } while (peeked < 0 && errno == EINTR);
    if (peeked == static_cast<ssize_t>(sizeof(first)) && first.magic == kMagic &&
        first.operation == Operation::Spawn) {
        return serveSpawn(connection);
    }
    int result = 0;
    for (;;) {
        pollfd pfd{connection, POLLIN, 0};
        int ready = ::poll(&pfd, 1, workers.empty() ? -1 : 1000);
        if (ready < 0 && errno != EINTR) {
            result = 1;
            break;
        }
        if (ready > 0) {
            int r = serveOne(connection);
            if (r != 0) {
                result = r > 0 ? 0 : 1;
                break;
            }
        }
        stopIdleWorkers();
    }
    while (!workers.empty()) {
        stop(workers.back());
        workers.pop_back();
    }
    return result;
}
