// SPDX-License-Identifier: LGPL-2.1-or-later
// The one spelling of each argument nsfdctl takes (nsfdctl(1), ARGUMENTS).
// Anything else is refused with CLI::ValidationError naming the argument, what
// was expected and what was given: never a second reading of the same text.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nsfd/ns.hpp"

namespace nsfd::cli {

// The largest pid the kernel can hand out (PID_MAX_LIMIT - 1 on 64-bit).
inline constexpr pid_t kMaxPid = 4'194'303;

// A process named on the command line: by pid, by nsfd id (a tracked
// process), or by a target nsfdd resolves. Exactly one is set.
struct ProcessArgument {
    std::optional<pid_t> pid;         // "4711"
    std::optional<std::uint64_t> id;  // "id:5321" or "/org/nsfd1/process/5321"
    // "container:ID", "cgroup:PATH", "unit:NAME", "machine:NAME", "PID:ID"
    std::optional<std::string> selector;
    std::string text;  // as given, for messages
};

// `argument` is the name shown in messages ("PID", "PROCESS", "SIGNAL", ...).

// A decimal number from 1 to kMaxPid, no sign, no leading zero.
pid_t parsePid(std::string_view text, std::string_view argument);

// A pid (as parsePid), "id:ID" or "/org/nsfd1/process/ID" with ID a decimal
// number from 1 to 2^64-1, no leading zero, or a selector: container:ID (ID
// 1 to 64 lower-case hex digits), cgroup:/PATH, unit:NAME, machine:NAME (NAME
// non-empty, no "/"), PID:ID (both as above). nsfdd checks selectors again.
ProcessArgument parseProcess(std::string_view text, std::string_view argument);

// A decimal number from 0 to SIGRTMAX, or a name as sigabbrev_np(3) gives it
// (TERM, KILL, USR1, ...), with or without "SIG", in capitals.
int parseSignal(std::string_view text, std::string_view argument);

// Namespace type names, each once: cgroup ipc mnt net pid pid_for_children
// time time_for_children user uts.
std::vector<NsType> parseNsTypes(const std::vector<std::string>& names, std::string_view argument);

// A uid or gid for -S/-G: a decimal number from 0 to 4294967294, or "follow"
// (std::nullopt: take the target's).
std::optional<std::uint32_t> parseIdOrFollow(std::string_view text, std::string_view argument);

// -S/-G: a fixed id, or "follow" the target's.
struct IdChoice {
    bool given = false;
    bool follow = false;
    std::uint32_t value = 0;
};

// -r/-w: the target's directory (`path` empty) or DIR.
struct DirectoryChoice {
    bool given = false;
    std::string path;
};

// What `nsfdctl exec` was asked, with nsenter(1)'s options and their meaning.
struct ExecArguments {
    ProcessArgument process;
    std::vector<NsType> named;  // --net, --mnt, ...
    bool all = false;           // --all
    IdChoice uid;               // -S, --setuid UID|follow
    IdChoice gid;               // -G, --setgid GID|follow
    bool preserveCredentials = false;
    DirectoryChoice root;  // -r, --root[=DIR]
    DirectoryChoice wd;    // -w, --wd[=DIR]
    bool fork = true;      // -F, --no-fork clears it
    bool env = false;      // --env
    std::vector<std::string> command;
    bool help = false;  // -h or --help before COMMAND: nothing else was checked
};

// The words after "exec": options (long ones spelled out in full, each given
// once; -S/-G take a value attached or as the next word, -r/-w only attached:
// -rDIR, --root=DIR), PROCESS, then [--] COMMAND [ARGS...], whose own options
// are its own.
ExecArguments parseExecArguments(const std::vector<std::string>& words);

// The options parseExecArguments() takes, for --help.
extern const char* const kExecOptionsHelp;

}  // namespace nsfd::cli
