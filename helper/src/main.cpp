// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfd-helper: makes sockets inside a target's network namespace as a caller,
// for nsfdd. It serves one connection (fd 3), from nsfdd only, one request at
// a time: a child forked per request enters the namespace, becomes exactly the
// caller (enterAndBecome), calls socket(2) and sends the fd to nsfdd itself.
// The helper holds the privilege nsfdd's own unit must not (CAP_SYS_ADMIN,
// CAP_SETUID, CAP_SETGID, CAP_SETPCAP) and does nothing else with it.
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "nsfd-helper/become.hpp"
#include "nsfd-helper/protocol.hpp"

namespace nsfd::helper {
namespace {

struct Request {
    RequestHeader header;
    gid_t groups[kMaxGroups];
};

int answer(int connection, Step step, int error) {
    Reply reply;
    reply.step = step;
    reply.error = error;
    return sendMessage(connection, &reply, sizeof(reply), -1);
}

// In the child: never returns. Exit 0 once an answer went to nsfdd.
[[noreturn]] void actAsCaller(int connection, const Request& request, int nsFd) {
    // Dies with the helper: nothing outlives a helper killed mid-request.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || ::getppid() == 1) {
        ::_exit(2);
    }
    const RequestHeader& h = request.header;
    NamespaceToEnter net{nsFd, CLONE_NEWNET};
    Identity identity{h.uid, h.gid, {request.groups, h.groupCount}};
    Step step = enterAndBecome({&net, 1}, identity);
    if (step != Step::None) {
        ::_exit(answer(connection, step, errno) == 0 ? 0 : 1);
    }
    ::close(nsFd);
    int fd = ::socket(h.family, h.type | SOCK_CLOEXEC, h.protocol);
    if (fd < 0) {
        ::_exit(answer(connection, Step::Socket, errno) == 0 ? 0 : 1);
    }
    Reply reply;
    ::_exit(sendMessage(connection, &reply, sizeof(reply), fd) == 0 ? 0 : 1);
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
    if (size < sizeof(h) || h.magic != kMagic || h.operation != Operation::OpenSocket ||
        h.groupCount > kMaxGroups || size != sizeof(h) + h.groupCount * sizeof(gid_t) ||
        (h.type & (SOCK_NONBLOCK | SOCK_CLOEXEC)) != 0 || nsFd < 0) {
        if (nsFd >= 0) {
            ::close(nsFd);
        }
        return answer(connection, Step::Request, nsFd < 0 ? EBADF : EINVAL) == 0 ? 0 : -1;
    }
    pid_t child = ::fork();
    if (child == 0) {
        actAsCaller(connection, request, nsFd);
    }
    int forkError = errno;
    ::close(nsFd);
    if (child < 0) {
        return answer(connection, Step::Fork, forkError) == 0 ? 0 : -1;
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return 0;
    }
    // It died without answering (a signal, or its answer could not be sent).
    return answer(connection, Step::Fork, ECHILD) == 0 ? 0 : -1;
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
    for (;;) {
        int r = serveOne(connection);
        if (r != 0) {
            return r > 0 ? 0 : 1;
        }
    }
}
