// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfd-helper: starts socket workers for nsfdd. It serves one connection (fd
// 3), from root only, one request at a time. Each request starts a worker: a
// child that entered a target's network namespace and became exactly the
// caller (enterAndBecome), and then makes sockets there for nsfdd over a
// connection of its own, which the helper hands to nsfdd and keeps no end of.
// nsfdd keeps a worker while its caller uses it and lets it go by closing that
// connection; so a call through a kept worker costs one round trip, not two.
// The helper holds the privilege nsfdd's own unit must not (CAP_SYS_ADMIN,
// CAP_SETUID, CAP_SETGID, CAP_SETPCAP; for a brokered run, spawn.cpp, also
// CAP_SYS_CHROOT and CAP_KILL) and does nothing else with it.
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

struct Request {
    RequestHeader header;
    gid_t groups[kMaxGroups];
};

// The workers started and not yet reaped. Each ends when nsfdd closes its
// connection (or with the helper); it is reaped at the next turn of the loop.
std::vector<pid_t> workers;

int answer(int connection, Step step, int error, int fd = -1) {
    Reply reply;
    reply.step = step;
    reply.error = error;
    return sendMessage(connection, &reply, sizeof(reply), fd);
}

// socket(2) as asked, answered on `fd`. False when nsfdd's end is gone.
bool makeSocket(int fd, std::int32_t family, std::int32_t type, std::int32_t protocol) {
    int made = -1;
    Reply reply;
    if ((type & (SOCK_NONBLOCK | SOCK_CLOEXEC)) != 0) {
        reply.step = Step::Request;
        reply.error = EINVAL;
    } else if ((made = ::socket(family, type | SOCK_CLOEXEC, protocol)) < 0) {
        reply.step = Step::Socket;
        reply.error = errno;
    }
    bool sent = sendMessage(fd, &reply, sizeof(reply), made) == 0;
    if (made >= 0) {
        ::close(made);
    }
    return sent;
}

// The worker's life, in the child: never returns.
[[noreturn]] void workerMain(int fd, const Request& request, int nsFd, pid_t helper) {
    // Dies with the helper: nothing it started outlives a helper that is killed.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || ::getppid() != helper) {
        ::_exit(2);
    }
    const RequestHeader& h = request.header;
    NamespaceToEnter net{nsFd, CLONE_NEWNET};
    Identity identity{h.uid, h.gid, {request.groups, h.groupCount}};
    Step step = enterAndBecome({&net, 1}, identity);
    if (step != Step::None || ::getppid() != helper) {
        int error = step != Step::None ? errno : ESRCH;
        ::_exit(answer(fd, step != Step::None ? step : Step::DeathSignal, error) == 0 ? 0 : 1);
    }
    ::close(nsFd);
    if (!makeSocket(fd, h.family, h.type, h.protocol)) {
        ::_exit(0);
    }
    for (;;) {
        WorkerRequest ask{};
        int none = -1;
        ssize_t n = receiveMessage(fd, &ask, sizeof(ask), &none, 0);
        if (none >= 0) {
            ::close(none);
        }
        if (n != static_cast<ssize_t>(sizeof(ask)) || ask.magic != kMagic) {
            ::_exit(0);  // nsfdd let it go (or broke the protocol)
        }
        if (!makeSocket(fd, ask.family, ask.type, ask.protocol)) {
            ::_exit(0);
        }
    }
}

// Starts a worker for `request` and hands nsfdd its connection. 0 to go on,
// -1 when nsfdd's connection broke.
int startWorker(int connection, const Request& request, int nsFd) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
        return answer(connection, Step::Fork, errno) == 0 ? 0 : -1;
    }
    pid_t helper = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
        // Only its own end: nsfdd must see the helper's connection end when
        // the helper goes, and each worker's when that worker goes.
        ::close(connection);
        ::close(pair[0]);
        workerMain(pair[1], request, nsFd, helper);
    }
    int error = errno;
    ::close(pair[1]);
    int r = pid < 0 ? answer(connection, Step::Fork, error)
                    : answer(connection, Step::None, 0, pair[0]);
    ::close(pair[0]);
    if (pid > 0) {
        workers.push_back(pid);
    }
    return r == 0 ? 0 : -1;
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
        (void)std::fprintf(stderr, "nsfd-helper: Failed to receive a request: %s\n",
                           std::strerror(static_cast<int>(-n)));
        return -1;
    }
    const RequestHeader& h = request.header;
    auto size = static_cast<std::size_t>(n);
    if (size < sizeof(h) || h.magic != kMagic || h.operation != Operation::StartSocketWorker ||
        h.groupCount > kMaxGroups || size != sizeof(h) + h.groupCount * sizeof(gid_t) ||
        (h.type & (SOCK_NONBLOCK | SOCK_CLOEXEC)) != 0 || nsFd < 0) {
        if (nsFd >= 0) {
            ::close(nsFd);
        }
        return answer(connection, Step::Request, nsFd < 0 ? EBADF : EINVAL) == 0 ? 0 : -1;
    }
    int r = startWorker(connection, request, nsFd);
    ::close(nsFd);
    return r;
}

void reapWorkers() {
    std::erase_if(workers, [](pid_t pid) {
        int status = 0;
        return ::waitpid(pid, &status, WNOHANG) != 0;  // reaped, or not ours any more
    });
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
        (void)std::fprintf(stderr, "nsfd-helper: fd %d is not a connection from nsfdd\n",
                           connection);
        return 2;
    }
    // Only root (nsfdd) may have requests served: the socket's mode says so
    // under systemd; this says so wherever the helper runs.
    if (peer.uid != 0) {
        (void)std::fprintf(stderr, "nsfd-helper: refusing a connection from uid %u\n", peer.uid);
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
        // While workers live, wake now and then to reap those nsfdd let go.
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
        reapWorkers();
    }
    // The workers die with it (their parent-death signal).
    return result;
}
