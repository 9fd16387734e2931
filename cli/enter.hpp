// SPDX-License-Identifier: LGPL-2.1-or-later
// Entering namespaces by fd and running a command there, as nsenter(1) does.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nsfd/ns.hpp"
#include "nsfd/pidfd.hpp"
#include "nsfd/unique_fd.hpp"

namespace nsfd::cli {

// How to run the command once inside, as nsenter's options say.
struct EnterOptions {
    std::optional<uid_t> uid;          // -S: become this uid
    std::optional<gid_t> gid;          // -G: become this gid, with no supplementary groups
    bool preserveCredentials = false;  // --preserve-credentials
    UniqueFd root;                     // -r: chroot(2) to this directory
    UniqueFd workingDirectory;         // -w: then fchdir(2) to this one
    bool fork = true;                  // -F clears it
    std::optional<std::vector<std::string>> environment;  // --env: exactly these "NAME=VALUE"
};

// The target's own files, read as the caller: the kernel decides (ptrace's
// PTRACE_MODE_READ rule, as for /proc/PID/{root,cwd,environ}); what nsfdd may
// grant does not extend to them. Each is checked to belong to `process`.
class TargetFiles {
  public:
    // Opens /proc/PID of `process`. Throws std::system_error.
    explicit TargetFiles(const PidFd& process);

    UniqueFd root() const;                         // /proc/PID/root
    UniqueFd workingDirectory() const;             // /proc/PID/cwd
    std::vector<std::string> environment() const;  // /proc/PID/environ
    uid_t uid() const;  // the owner of /proc/PID (its euid), as nsenter's "follow"
    gid_t gid() const;

  private:
    UniqueFd open(const char* name, int flags, const char* what) const;
    pid_t pid_;
    UniqueFd directory_;
};

// A directory named on the command line, opened before any namespace is entered.
UniqueFd openDirectory(const std::string& path);

// Enters every namespace in `namespaces`, then runs `command` (execvp) and
// returns the exit code nsfdctl should exit with: the command's, 128+N if a
// signal N ended it, 126/127 if it could not be run. Throws std::system_error
// if entering a namespace fails (nothing has run then).
//
// The user namespace is entered first when the caller is not root (it is what
// grants the rights), last when it is. Then, unless preserveCredentials, the
// groups are dropped and uid and gid become 0 in it (or -S/-G's), as nsenter
// does. Entering the mount namespace moves the root to that namespace's root;
// the working directory is kept by path if it exists there, "/" otherwise;
// then `root` and `workingDirectory` apply. The pid and time namespaces apply
// to children only, so with either of them the command runs in a forked child
// that nsfdctl waits for (unless !fork).
int runInNamespaces(std::map<NsType, NsFd> namespaces, EnterOptions options,
                    const std::vector<std::string>& command);

}  // namespace nsfd::cli
