// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdctl exec for a caller that cannot enter the namespaces itself: the
// command runs brokered by nsfdd (Spawn), as this user, in the target's net,
// uts and ipc namespaces and this process's own mount namespace.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "arguments.hpp"
#include "nsfd/client.hpp"

namespace nsfd::cli {

// The types a brokered run can enter: net, uts, ipc.
bool isBrokerable(NsType type) noexcept;

// Whether this process can setns(2) into `types` itself: it holds
// CAP_SYS_ADMIN (root), or enters a user namespace, which grants the rest.
bool canEnterItself(const std::vector<NsType>& types) noexcept;

// Runs args.command in `types` of `pid` through `client` (Varlink), with
// exec's options as far as they make sense for a run as this user, forwarding
// SIGINT, SIGTERM, SIGHUP and SIGQUIT to the command through its pidfd.
// Returns the command's exit code (128+N for signal N). Throws
// nsfd::AccessDenied for a type it cannot enter (mnt, pid, user, cgroup,
// time), nsfd::InvalidArgument for an option it cannot honour (-S/-G other
// than one's own ids, -r), nsfd::Error for nsfdd's refusals.
int runBrokered(Client& client, pid_t pid, const std::vector<NsType>& types,
                const ExecArguments& args);

}  // namespace nsfd::cli
