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
// Where nsfd-run.socket listens under systemd, for Spawn: one helper per run,
// each its own nsfd-run@.service instance (its cgroup, its limits), without
// the socket helper's sandbox, which the command would inherit.
inline constexpr const char* kRunSocketPath = "/run/nsfd/run";
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
    Spawn = 2,  // a command in the passed namespaces as the caller (SpawnHeader)
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
    // Spawn only:
    ChangeRoot,       // chroot(2) to the caller's root directory
    ChangeDirectory,  // fchdir(2) to the caller's working directory, as the caller
    Stdio,            // dup2(2) of the caller's stdin, stdout, stderr
    DeathSignal,      // PR_SET_PDEATHSIG again, after the last credential change
    JoinCgroup,       // write to the run's v1 tasks or v2 cgroup.procs (by hand)
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

// Spawn: a command run as the caller, one per helper connection, and the
// first request on it. SCM_RIGHTS carries, in this order: `namespaceCount`
// namespace fds of the target (their CLONE_NEW* types in `namespaceTypes`),
// the caller's mount namespace, its root directory, its working directory,
// then its stdin, stdout and stderr. After the header: `groupCount` gids
// (uint32_t), then `argc` + `envc` NUL-terminated strings, `payloadBytes` in all.
// The helper answers SpawnReply{Started} with the command's pidfd, then
// SpawnReply{Exited}; or SpawnReply{Failed} alone. When nsfdd's end closes,
// the helper SIGKILLs everything the command started and exits.
inline constexpr std::uint32_t kMaxSpawnNamespaces = 3;  // net, uts, ipc
inline constexpr std::uint32_t kSpawnFixedFds = 6;       // mnt, root, cwd, stdin, stdout, stderr
inline constexpr std::uint32_t kMaxSpawnFds = kMaxSpawnNamespaces + kSpawnFixedFds;
// What the strings may take: under a Varlink call's 64 KiB (varlink/codec.hpp).
inline constexpr std::uint32_t kMaxSpawnPayload = 64 * 1024;
inline constexpr std::uint32_t kMaxSpawnStrings = 8192;

struct SpawnHeader {
    std::uint32_t magic = kMagic;
    Operation operation = Operation::Spawn;
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::uint32_t groupCount = 0;
    std::uint32_t namespaceCount = 0;
    std::int32_t namespaceTypes[kMaxSpawnNamespaces] = {};
    std::uint32_t argc = 0;  // >= 1
    std::uint32_t envc = 0;
    std::uint32_t payloadBytes = 0;
};

struct SpawnReply {
    enum class Kind : std::uint32_t {
        Started = 1,  // `pid`, with its pidfd as SCM_RIGHTS
        Exited = 2,   // `waitStatus`: the command's, as waitpid(2) gives it
        Failed = 3,   // `step` and `error`: nothing runs
    };
    std::uint32_t magic = kMagic;
    Kind kind = Kind::Failed;
    Step step = Step::None;
    std::int32_t error = 0;
    std::int32_t pid = 0;
    std::int32_t waitStatus = 0;
};

// "enter the network namespace", "socket(2)", ...: what `step` attempted.
const char* describe(Step step) noexcept;

// One message of `size` bytes with `fd` (if >= 0) as SCM_RIGHTS, MSG_NOSIGNAL.
// Returns 0 or -errno; a short send is -EMSGSIZE.
int sendMessage(int socket, const void* data, std::size_t size, int fd) noexcept;

// One message into `buffer`, blocking unless `flags` has MSG_DONTWAIT. Returns
// its size (0: the peer hung up) or -errno. `*fd` is the fd that came with it,
// close-on-exec and the caller's to close, or -1. A message longer than `size`,
// or with more than one fd, is -EMSGSIZE (its fds closed).
ssize_t receiveMessage(int socket, void* buffer, std::size_t size, int* fd, int flags) noexcept;

// sendMessage() with `count` fds (at most kMaxSpawnFds).
int sendMessageFds(int socket, const void* data, std::size_t size, const int* fds,
                   std::size_t count) noexcept;

// receiveMessage() taking up to `maxFds` fds into `fds` (close-on-exec, the
// caller's to close), their number in `*count`; any further fds are closed
// and the message is -EMSGSIZE.
ssize_t receiveMessageFds(int socket, void* buffer, std::size_t size, int* fds, std::size_t maxFds,
                          std::size_t* count, int flags) noexcept;

}  // namespace nsfd::helper
