// SPDX-License-Identifier: LGPL-2.1-or-later
// The wire between nsfdd and nsfd-helper, and between nsfdd and the socket
// workers the helper starts: SOCK_SEQPACKET, one message each way per request,
// in order. nsfdd asks the helper for a worker (the request with the target's
// network namespace fd as SCM_RIGHTS); the helper forks one that enters the
// namespace and becomes exactly the caller, and answers with nsfdd's end of a
// connection to that worker, or with the step that failed and its errno. From
// then on nsfdd asks the worker directly (WorkerRequest), and the worker
// answers each with a Reply and the socket made. Both ends are built from the
// same tree: the magic changes whenever the layout does.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace nsfd::helper {

// Where nsfd-helper.socket listens under systemd (Accept=yes: one helper per
// connection). Mode 0600, root's: only nsfdd connects.
inline constexpr const char* kSocketPath = "/run/nsfd/helper";
// The connection a helper serves: systemd's first passed fd (Accept=yes), or
// the socketpair end nsfdd puts there when it starts the helper itself.
inline constexpr int kConnectionFd = 3;

inline constexpr std::uint32_t kMagic = 0x6e736602;  // "nsf" and the layout's version

// How many supplementary groups a request carries at most (the kernel allows
// NGROUPS_MAX, 65536; a caller with more is refused by nsfdd).
inline constexpr std::uint32_t kMaxGroups = 4096;

enum class Operation : std::uint32_t {
    // Start a socket worker in the passed network namespace as the caller. Its
    // first Reply, on the connection the helper hands over, is for socket(family,
    // type, protocol) of this request.
    StartSocketWorker = 1,
};

struct RequestHeader {
    std::uint32_t magic = kMagic;
    Operation operation = Operation::StartSocketWorker;
    std::uint32_t uid = 0;  // every uid slot: real, effective, saved, fs
    std::uint32_t gid = 0;  // every gid slot
    std::int32_t family = 0;
    std::int32_t type = 0;  // without SOCK_NONBLOCK or SOCK_CLOEXEC
    std::int32_t protocol = 0;
    std::uint32_t groupCount = 0;  // the supplementary groups, which follow as uint32_t
};

// What a request went as far as. None: it succeeded.
enum class Step : std::uint32_t {
    None = 0,
    Request,           // the request was malformed (EINVAL) or came without its fd (EBADF)
    Fork,              // the helper could not fork, or its child died before answering
    EnterNamespace,    // setns(2)
    SecureBits,        // PR_SET_SECUREBITS
    DropBounding,      // PR_CAPBSET_DROP
    ClearAmbient,      // PR_CAP_AMBIENT_CLEAR_ALL
    SetGroups,         // setgroups(2)
    SetGid,            // setresgid(2)
    SetUid,            // setresuid(2)
    DropCapabilities,  // capset(2) to nothing
    NoNewPrivileges,   // PR_SET_NO_NEW_PRIVS
    CheckIdentity,     // read back: not exactly the identity asked for (EPERM)
    Socket,            // socket(2) itself
    DeathSignal,       // PR_SET_PDEATHSIG again, after the credentials changed
};

// The helper's answer to StartSocketWorker (with Step::None, nsfdd's end of the
// worker's connection comes as SCM_RIGHTS), and a worker's to each socket asked
// of it (with Step::None, the socket comes). A worker that could not become the
// caller answers its first request with the step that failed, and exits.
struct Reply {
    std::uint32_t magic = kMagic;
    Step step = Step::None;
    std::int32_t error = 0;  // the errno of `step`; with 0, one fd comes as SCM_RIGHTS
};

// What nsfdd asks a worker after its first socket: socket(2)'s arguments.
struct WorkerRequest {
    std::uint32_t magic = kMagic;
    std::int32_t family = 0;
    std::int32_t type = 0;  // without SOCK_NONBLOCK or SOCK_CLOEXEC
    std::int32_t protocol = 0;
};

// "enter the network namespace", "socket(2)", ...: what `step` attempted.
const char* describe(Step step) noexcept;

// One message of `size` bytes with `fd` (if >= 0) as SCM_RIGHTS, MSG_NOSIGNAL.
// Returns 0 or -errno; a short send is -EMSGSIZE.
int sendMessage(int socket, const void* data, std::size_t size, int fd) noexcept;

// One message into `buffer`, blocking unless `flags` has MSG_DONTWAIT. Returns
// its size (0: the peer hung up) or -errno. `*fd` is the fd that came with it,
// close-on-exec and the caller's to close, or -1; any further fds are closed.
// A message longer than `size` is -EMSGSIZE (its fds closed).
ssize_t receiveMessage(int socket, void* buffer, std::size_t size, int* fd, int flags) noexcept;

}  // namespace nsfd::helper
