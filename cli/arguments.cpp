// SPDX-License-Identifier: LGPL-2.1-or-later
#include "arguments.hpp"

#include <signal.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstring>

#include "nsfd/dbus_names.hpp"
#include "nsfd/decimal.hpp"

namespace nsfd::cli {

namespace {

constexpr std::string_view kPidForm = "a pid (a decimal number from 1 to 4194303)";

[[noreturn]] void refuse(std::string_view argument, std::string_view expected,
                         std::string_view text) {
    throw CLI::ValidationError(std::string(argument), "expected " + std::string(expected) +
                                                          ", got '" + std::string(text) + "'");
}

}  // namespace

pid_t parsePid(std::string_view text, std::string_view argument) {
    std::optional<std::uint64_t> pid = parseCanonicalDecimal(text, kMaxPid);
    if (!pid || *pid == 0) {
        refuse(argument, kPidForm, text);
    }
    return static_cast<pid_t>(*pid);
}

namespace {

// A selector nsfdd resolves, if `text` is written as one; refused if it is
// written as one, wrongly.
std::optional<std::string> parseSelector(std::string_view text, std::string_view argument) {
    auto startsWith = [&](std::string_view prefix) {
        return text.substr(0, prefix.size()) == prefix;
    };
    auto rest = [&](std::string_view prefix) { return text.substr(prefix.size()); };
    auto isName = [](std::string_view name) {
        return !name.empty() && name.find('/') == std::string_view::npos &&
               std::all_of(name.begin(), name.end(), [](char c) { return c > ' ' && c < 127; });
    };
    if (startsWith("container:")) {
        std::string_view id = rest("container:");
        if (id.empty() || id.size() > 64 || !std::all_of(id.begin(), id.end(), [](char c) {
                return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
            })) {
            refuse(argument,
                   "container:ID, ID a container id or a prefix of one (1 to 64 "
                   "lower-case hexadecimal digits)",
                   text);
        }
    } else if (startsWith("cgroup:")) {
        if (rest("cgroup:").substr(0, 1) != "/") {
            refuse(argument,
                   "cgroup:PATH, PATH from the cgroup2 root (cgroup:/system.slice/x.service)",
                   text);
        }
    } else if (startsWith("unit:")) {
        if (!isName(rest("unit:"))) {
            refuse(argument, "unit:NAME, a systemd unit name", text);
        }
    } else if (startsWith("machine:")) {
        if (!isName(rest("machine:"))) {
            refuse(argument, "machine:NAME, a machine name", text);
        }
    } else {
        std::size_t colon = text.find(':');
        if (colon == std::string_view::npos || colon == 0 ||
            !std::all_of(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(colon),
                         [](char c) { return c >= '0' && c <= '9'; })) {
            return std::nullopt;
        }
        std::optional<std::uint64_t> pid = parseCanonicalDecimal(text.substr(0, colon), kMaxPid);
        std::optional<std::uint64_t> id = parseCanonicalDecimal(text.substr(colon + 1), UINT64_MAX);
        if (!pid || *pid == 0 || !id || *id == 0) {
            refuse(argument, "PID:ID, a pid and its pidfs id, in decimal", text);
        }
    }
    return std::string(text);
}

}  // namespace

ProcessArgument parseProcess(std::string_view text, std::string_view argument) {
    constexpr std::string_view kForms =
        "a pid (a decimal number from 1 to 4194303), id:ID or /org/nsfd1/process/ID (ID: the "
        "nsfd id, a decimal number), container:ID, cgroup:PATH, unit:NAME, machine:NAME or "
        "PID:ID";
    ProcessArgument process;
    process.text = text;
    if (std::optional<std::string> selector = parseSelector(text, argument)) {
        process.selector = std::move(selector);
        return process;
    }
    std::string_view idPrefix = "id:";
    std::string_view pathPrefix = nsfd::dbus::kProcessPathPrefix;
    std::optional<std::uint64_t> id;
    if (text.substr(0, idPrefix.size()) == idPrefix) {
        id = parseCanonicalDecimal(text.substr(idPrefix.size()), UINT64_MAX);
    } else if (text.substr(0, pathPrefix.size()) == pathPrefix) {
        id = parseCanonicalDecimal(text.substr(pathPrefix.size()), UINT64_MAX);
    } else {
        std::optional<std::uint64_t> pid = parseCanonicalDecimal(text, kMaxPid);
        if (!pid || *pid == 0) {
            refuse(argument, kForms, text);
        }
        process.pid = static_cast<pid_t>(*pid);
        return process;
    }
    if (!id || *id == 0) {
        refuse(argument, kForms, text);
    }
    process.id = *id;
    return process;
}

int parseSignal(std::string_view text, std::string_view argument) {
    std::string expected = "a signal: a decimal number from 0 to " + std::to_string(SIGRTMAX) +
                           " or a name such as TERM or SIGTERM";
    if (!text.empty() && text[0] >= '0' && text[0] <= '9') {
        std::optional<std::uint64_t> number =
            parseCanonicalDecimal(text, static_cast<std::uint64_t>(SIGRTMAX));
        if (!number) {
            refuse(argument, expected, text);
        }
        return static_cast<int>(*number);
    }
    std::string_view name = text.substr(0, 3) == "SIG" ? text.substr(3) : text;
    for (int sig = 1; sig < NSIG; ++sig) {
        const char* abbrev = sigabbrev_np(sig);
        if (abbrev != nullptr && !name.empty() && name == abbrev) {
            return sig;
        }
    }
    refuse(argument, expected, text);
}

std::vector<NsType> parseNsTypes(const std::vector<std::string>& names, std::string_view argument) {
    std::vector<NsType> types;
    for (const std::string& name : names) {
        std::optional<NsType> type = parseNsType(name);
        if (!type) {
            refuse(argument,
                   "a namespace type (cgroup ipc mnt net pid pid_for_children time "
                   "time_for_children user uts)",
                   name);
        }
        if (std::find(types.begin(), types.end(), *type) != types.end()) {
            throw CLI::ValidationError(std::string(argument),
                                       "namespace type '" + name + "' given twice");
        }
        types.push_back(*type);
    }
    return types;
}

std::optional<std::uint32_t> parseIdOrFollow(std::string_view text, std::string_view argument) {
    if (text == "follow") {
        return std::nullopt;
    }
    // (uid_t)-1 means "unchanged" to setresuid(2): not an id.
    std::optional<std::uint64_t> id = parseCanonicalDecimal(text, UINT32_MAX - 1);
    if (!id) {
        refuse(argument, "a decimal number from 0 to 4294967294, or follow", text);
    }
    return static_cast<std::uint32_t>(*id);
}

}  // namespace nsfd::cli

namespace nsfd::cli {

const char* const kExecOptionsHelp = R"(Options of exec (nsenter's, with its meaning):
  --cgroup --ipc --mnt --net --pid --time --user --uts
                        Enter that namespace of PROCESS
  --all                 Enter all its namespaces but those the caller is in already
  -S, --setuid UID|follow
                        Become UID after entering (follow: PROCESS's uid)
  -G, --setgid GID|follow
                        Become GID, with no supplementary groups (follow: PROCESS's gid)
  --preserve-credentials
                        With --user, keep the uid, gid and groups (default: 0, 0, none)
  -r, --root[=DIR]      Make DIR (default: PROCESS's root) the root directory
  -w, --wd[=DIR]        Make DIR (default: PROCESS's working directory) the working directory
  -F, --no-fork         Run COMMAND in nsfdctl's process even with --pid or --time
  --env                 Run COMMAND with PROCESS's environment (/proc/PID/environ)
)";

namespace {

[[noreturn]] void refuseOption(const std::string& message) {
    throw CLI::ValidationError("exec", message);
}

}  // namespace

ExecArguments parseExecArguments(const std::vector<std::string>& words) {
    static const std::vector<std::pair<std::string, NsType>> kNamespaceFlags = {
        {"cgroup", NsType::Cgroup}, {"ipc", NsType::Ipc}, {"mnt", NsType::Mnt},
        {"net", NsType::Net},       {"pid", NsType::Pid}, {"time", NsType::Time},
        {"user", NsType::User},     {"uts", NsType::Uts}};
    ExecArguments args;
    bool haveProcess = false;
    std::vector<std::string> seen;
    auto once = [&](const std::string& option) {
        if (std::find(seen.begin(), seen.end(), option) != seen.end()) {
            refuseOption(option + " given twice");
        }
        seen.push_back(option);
    };
    std::size_t i = 0;
    // The value of -S/-G: attached, else the next word.
    auto valueOf = [&](const std::string& option, std::optional<std::string> attached) {
        if (attached) {
            return *attached;
        }
        if (i + 1 >= words.size()) {
            refuseOption(option + " needs a value");
        }
        return words[++i];
    };
    auto idChoice = [&](IdChoice& choice, const std::string& option, const std::string& value) {
        std::optional<std::uint32_t> id = parseIdOrFollow(value, option);
        choice.given = true;
        choice.follow = !id;
        choice.value = id.value_or(0);
    };
    auto directory = [&](DirectoryChoice& choice, const std::string& option,
                         std::optional<std::string> attached) {
        if (attached && attached->empty()) {
            refuseOption(option + "= needs a directory (or give " + option + " alone)");
        }
        choice.given = true;
        choice.path = attached.value_or("");
    };
    for (; i < words.size(); ++i) {
        const std::string& word = words[i];
        if (word == "--help" || word == "-h") {
            args.help = true;
            return args;
        }
        if (word == "--") {
            args.command.assign(words.begin() + static_cast<std::ptrdiff_t>(i) + 1, words.end());
            break;
        }
        if (word.size() > 2 && word.compare(0, 2, "--") == 0) {
            std::size_t equals = word.find('=');
            std::string name = word.substr(0, equals);
            std::optional<std::string> value;
            if (equals != std::string::npos) {
                value = word.substr(equals + 1);
            }
            once(name);
            auto flag = [&](bool& target) {
                if (value) {
                    refuseOption(name + " takes no value, got '" + word + "'");
                }
                target = true;
            };
            auto ns = std::find_if(kNamespaceFlags.begin(), kNamespaceFlags.end(),
                                   [&](const auto& entry) { return "--" + entry.first == name; });
            if (ns != kNamespaceFlags.end()) {
                bool set = false;
                flag(set);
                args.named.push_back(ns->second);
            } else if (name == "--all") {
                flag(args.all);
            } else if (name == "--setuid") {
                once("-S");
                idChoice(args.uid, name, valueOf(name, value));
            } else if (name == "--setgid") {
                once("-G");
                idChoice(args.gid, name, valueOf(name, value));
            } else if (name == "--preserve-credentials") {
                flag(args.preserveCredentials);
            } else if (name == "--root") {
                once("-r");
                directory(args.root, name, value);
            } else if (name == "--wd") {
                once("-w");
                directory(args.wd, name, value);
            } else if (name == "--no-fork") {
                once("-F");
                bool noFork = false;
                flag(noFork);
                args.fork = false;
            } else if (name == "--env") {
                flag(args.env);
            } else {
                refuseOption("unknown option '" + name + "' (see nsfdctl exec --help)");
            }
            continue;
        }
        if (word.size() >= 2 && word[0] == '-' && !(word[1] >= '0' && word[1] <= '9')) {
            std::string option = word.substr(0, 2);
            std::optional<std::string> attached;
            if (word.size() > 2) {
                attached = word.substr(2);
            }
            if (option == "-S") {
                once("--setuid");
                once(option);
                idChoice(args.uid, option, valueOf(option, attached));
            } else if (option == "-G") {
                once("--setgid");
                once(option);
                idChoice(args.gid, option, valueOf(option, attached));
            } else if (option == "-r") {
                once("--root");
                once(option);
                directory(args.root, option, attached);
            } else if (option == "-w") {
                once("--wd");
                once(option);
                directory(args.wd, option, attached);
            } else if (option == "-F" && !attached) {
                once("--no-fork");
                once(option);
                args.fork = false;
            } else {
                refuseOption("unknown option '" + word + "' (see nsfdctl exec --help)");
            }
            continue;
        }
        if (!haveProcess) {
            args.process = parseProcess(word, "PROCESS");
            haveProcess = true;
            continue;
        }
        args.command.assign(words.begin() + static_cast<std::ptrdiff_t>(i), words.end());
        break;
    }
    if (!haveProcess) {
        throw CLI::ValidationError("PROCESS", "exec needs the process whose namespaces to enter");
    }
    if (args.command.empty()) {
        throw CLI::ValidationError("COMMAND", "exec needs a command to run");
    }
    if (args.named.empty() && !args.all) {
        refuseOption("name at least one namespace (--net, ..., --all)");
    }
    return args;
}

}  // namespace nsfd::cli
