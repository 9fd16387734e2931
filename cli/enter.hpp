// SPDX-License-Identifier: LGPL-2.1-or-later
// Entering namespaces by fd and running a command there, as nsenter(1) does.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "nsfd/ns.hpp"

namespace nsfd::cli {

// Enters every namespace in `namespaces`, then runs `command` (execvp) and
// returns the exit code nsfdctl should exit with: the command's, 128+N if a
// signal N ended it, 126/127 if it could not be run. Throws std::system_error
// if entering a namespace fails (nothing has run then).
//
// The user namespace is entered first when the caller is not root (it is what
// grants the rights), last when it is. Then the uid and gid become 0 in it, as
// nsenter does. Entering the mount namespace moves the root to that
// namespace's root; the working directory is kept by path if it exists there,
// "/" otherwise. The pid and time namespaces apply to children only, so with
// either of them the command runs in a forked child that nsfdctl waits for.
int runInNamespaces(std::map<NsType, NsFd> namespaces, const std::vector<std::string>& command);

}  // namespace nsfd::cli
