// SPDX-License-Identifier: LGPL-2.1-or-later
// The wire between nsfdd and nsfd-helper: one SOCK_SEQPACKET message each way
// per request, in order. nsfdd sends what to make and as whom, with the target's
// namespace fd as SCM_RIGHTS; the helper answers with the fd made, or with the
// step that failed and its errno. Both ends are built from the same tree: the
// magic changes whenever the layout does.
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

inline constexpr std::uint32_t kMagic = 0x6e736601;  // "nsf" and the layout's version

// How many supplementary groups a request carries at most (the kernel allows
// NGROUPS_MAX, 65536; a caller with more is refused by nsfdd).
inline constexpr std::uint32_t kMaxGroups = 4096;

enum class Operation : std::uint32_t {
    OpenSocket = 1,  // socket(family, type, protocol) in the passed network namespace
};

struct RequestHeader {
    std::uint32_t magic = kMagic;
    Operation operation = Operation::OpenSocket;
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
};

struct Reply {
    std::uint32_t magic = kMagic;
    Step step = Step::None;
    std::int32_t error = 0;  // the errno of `step`; with 0, one fd comes as SCM_RIGHTS
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
