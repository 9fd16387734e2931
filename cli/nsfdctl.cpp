// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdctl: nsfd from the shell. See nsfdctl(1).
#include <signal.h>
#include <sys/wait.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <algorithm>
#include <atomic>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <system_error>

#include "arguments.hpp"
#include "connect.hpp"
#include "enter.hpp"
#include "nsfd/client.hpp"
#include "polkit_agent.hpp"
#include "spawn.hpp"

namespace {

using nlohmann::json;

// Exit codes: documented in nsfdctl(1).
enum ExitCode {
    kOk = 0,
    kFailed = 1,
    kBadArguments = 2,
    kDaemonUnavailable = 3,
    kAccessDenied = 4,
    kNoSuchProcess = 5,
};

std::atomic<bool> interrupted{false};

struct Options {
    std::string bus;
    std::string transport = "auto";
    bool json = false;
    bool askPassword = true;
    // Set for the second try of a call polkit wanted authentication for,
    // once an agent runs.
    bool interactive = false;
};

// The transport of the last client made: a challenge is answered only over Varlink.
std::optional<nsfd::TransportKind> usedTransport;
// Set when a password was wanted on a terminal and pkttyagent could not run.
bool noAgent = false;

nsfd::Client connect(const Options& options) {
    nsfd::Client client = [&] {
        if (!options.bus.empty()) {
            return nsfd::Client::connect(options.bus);
        }
        if (options.transport == "bus") {
            return nsfd::Client::bus();
        }
        if (options.transport == "varlink") {
            const char* path = std::getenv("NSFD_VARLINK_SOCKET");
            return nsfd::Client::varlink(path != nullptr ? path : nsfd::varlink::kSocketPath);
        }
        return nsfd::Client::system();
    }();
    usedTransport = client.transport();
    if (options.interactive && client.transport() == nsfd::TransportKind::Varlink) {
        client.allowInteractiveAuthorization(true);
    }
    return client;
}

std::string describeStatus(int status) {
    if (status < 0) {
        return "unknown";
    }
    if (WIFEXITED(status)) {
        return "exited " + std::to_string(WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) {
        const char* abbrev = sigabbrev_np(WTERMSIG(status));
        return std::string("killed by SIG") + (abbrev ? abbrev : std::to_string(WTERMSIG(status)));
    }
    return "status " + std::to_string(status);
}

json toJson(const nsfd::ProcessInfo& info) {
    json out = {{"pid", info.pid},
                {"id", info.id},
                {"thread_group_id", info.threadGroupId},
                {"parent_pid", info.parentPid},
                {"cgroup_id", info.cgroupId},
                {"state", std::string(nsfd::toString(info.state))}};
    if (info.credentials) {
        const nsfd::Credentials& c = *info.credentials;
        out["uids"] = {{"real", c.ruid}, {"effective", c.euid}, {"saved", c.suid}, {"fs", c.fsuid}};
        out["gids"] = {{"real", c.rgid}, {"effective", c.egid}, {"saved", c.sgid}, {"fs", c.fsgid}};
    }
    out["exit_status"] = info.exitStatus ? json(*info.exitStatus) : json(nullptr);
    return out;
}

void printTable(const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> widths;
    for (const auto& row : rows) {
        widths.resize(std::max(widths.size(), row.size()));
        for (std::size_t i = 0; i < row.size(); ++i) {
            widths[i] = std::max(widths[i], row[i].size());
        }
    }
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) {
                line += std::string(widths[i] - row[i].size() + 2, ' ');
            }
        }
        std::cout << line << '\n';
    }
}

// -- commands --

int status(const Options& options) {
    nsfd::Client client = connect(options);
    std::string version = client.daemonVersion();
    std::vector<std::string> features = client.kernelFeatures();
    unsigned tracked = client.trackedCount();
    std::string transport = client.transport() == nsfd::TransportKind::Varlink ? "varlink" : "bus";
    if (options.json) {
        std::cout << json{{"version", version},
                          {"kernel_features", features},
                          {"tracked_processes", tracked},
                          {"transport", transport}}
                  << '\n';
        return kOk;
    }
    std::string joined;
    for (const std::string& feature : features) {
        joined += (joined.empty() ? "" : " ") + feature;
    }
    printTable({{"Version:", version},
                {"Kernel features:", joined},
                {"Tracked processes:", std::to_string(tracked)},
                {"Transport:", transport}});
    return kOk;
}

using nsfd::cli::ProcessArgument;

// The tracked process named by id; a pid names whatever process has it now.
nsfd::TrackedProcess trackedById(nsfd::Client& client, const ProcessArgument& process) {
    return client.processWithId(*process.id);
}

int track(const Options& options, const ProcessArgument& target) {
    nsfd::Client client = connect(options);
    nsfd::TrackedProcess process =
        target.selector ? client.track(*target.selector) : client.track(*target.pid);
    if (options.json) {
        std::cout << json{{"pid", process.pid()},
                          {"id", process.id()},
                          {"path", process.objectPath()}}
                  << '\n';
    } else {
        std::cout << process.objectPath() << '\n';
    }
    return kOk;
}

int untrack(const Options& options, const ProcessArgument& process) {
    nsfd::Client client = connect(options);
    if (process.id) {
        trackedById(client, process).untrack();
    } else if (process.selector) {
        client.processWithId(client.info(*process.selector).id).untrack();
    } else {
        client.process(*process.pid).untrack();
    }
    return kOk;
}

int list(const Options& options) {
    nsfd::Client client = connect(options);
    std::vector<nsfd::ProcessEntry> entries = client.list();
    if (options.json) {
        json out = json::array();
        for (const auto& entry : entries) {
            out.push_back({{"pid", entry.pid}, {"id", entry.id}, {"path", entry.objectPath}});
        }
        std::cout << out << '\n';
        return kOk;
    }
    std::vector<std::vector<std::string>> rows = {{"PID", "ID", "OBJECT"}};
    for (const auto& entry : entries) {
        rows.push_back({std::to_string(entry.pid), std::to_string(entry.id), entry.objectPath});
    }
    printTable(rows);
    return kOk;
}

int info(const Options& options, const ProcessArgument& process) {
    nsfd::Client client = connect(options);
    nsfd::ProcessInfo info = process.id         ? trackedById(client, process).info()
                             : process.selector ? client.info(*process.selector)
                                                : client.info(*process.pid);
    if (options.json) {
        std::cout << toJson(info) << '\n';
        return kOk;
    }
    std::vector<std::vector<std::string>> rows = {
        {"Pid:", std::to_string(info.pid)},
        {"Id:", std::to_string(info.id)},
        {"Thread group:", std::to_string(info.threadGroupId)},
        {"Parent pid:", std::to_string(info.parentPid)},
        {"Cgroup id:", std::to_string(info.cgroupId)},
        {"State:", std::string(nsfd::toString(info.state))}};
    if (info.credentials) {
        const nsfd::Credentials& c = *info.credentials;
        auto four = [](auto a, auto b, auto c2, auto d) {
            return std::to_string(a) + " " + std::to_string(b) + " " + std::to_string(c2) + " " +
                   std::to_string(d);
        };
        rows.push_back({"Uids (r e s fs):", four(c.ruid, c.euid, c.suid, c.fsuid)});
        rows.push_back({"Gids (r e s fs):", four(c.rgid, c.egid, c.sgid, c.fsgid)});
    }
    if (info.exitStatus) {
        rows.push_back({"Exit status:", describeStatus(*info.exitStatus)});
    }
    printTable(rows);
    return kOk;
}

int namespaces(const Options& options, const ProcessArgument& process,
               const std::vector<nsfd::NsType>& types) {
    nsfd::Client client = connect(options);
    std::map<nsfd::NsType, nsfd::NsFd> fds =
        process.id         ? trackedById(client, process).namespaceFds(types)
        : process.selector ? client.namespaceFds(*process.selector, types)
                           : client.namespaceFds(*process.pid, types);
    if (options.json) {
        json out = json::object();
        for (const auto& [type, ns] : fds) {
            out[std::string(nsfd::toString(type))] = {{"id", ns.id()}, {"inode", ns.inode()}};
        }
        std::cout << out << '\n';
        return kOk;
    }
    std::vector<std::vector<std::string>> rows = {{"TYPE", "ID", "INODE"}};
    for (const auto& [type, ns] : fds) {
        rows.push_back({std::string(nsfd::toString(type)), std::to_string(ns.id()),
                        std::to_string(ns.inode())});
    }
    printTable(rows);
    return kOk;
}

int watch(const Options& options) {
    nsfd::Client client = connect(options);
    client.onProcessExited([&](const nsfd::ExitEvent& event) {
        if (options.json) {
            std::cout << json{{"pid", event.pid},
                              {"id", event.id},
                              {"path", event.objectPath},
                              {"wait_status", event.waitStatus}}
                      << std::endl;
        } else {
            std::cout << "pid " << event.pid << " (id " << event.id << ") "
                      << describeStatus(event.waitStatus) << std::endl;
        }
    });
    // The client listens from its construction on: from here no exit is missed.
    std::cerr << "Watching exits of tracked processes (Ctrl-C to stop)" << std::endl;
    struct sigaction action {};
    action.sa_handler = [](int) { interrupted = true; };
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    while (!interrupted) {
        client.runEventLoop(std::chrono::milliseconds(200));
    }
    return kOk;
}

int sendSignal(const Options& options, const ProcessArgument& target, int signal) {
    nsfd::Client client = connect(options);
    if (target.id) {
        trackedById(client, target).signal(signal);
        return kOk;
    }
    if (target.selector) {
        client.sendSignal(*target.selector, signal);
        return kOk;
    }
    // By a pidfd opened here (Manager.SendSignalByPidFd): no tracking, so
    // nobody's tracking and no quota is touched.
    client.sendSignal(*target.pid, signal);
    return kOk;
}

int connectTo(const Options& options, const ProcessArgument& target,
              const nsfd::cli::SocketAddress& address) {
    nsfd::Client client = connect(options);
    nsfd::UniqueFd socket =
        target.id ? trackedById(client, target).openSocket(address.family, address.type, 0)
                  : client.openSocket(*target.pid, address.family, address.type, 0);
    nsfd::cli::connectAndCopy(std::move(socket), address);
    return kOk;
}

// The namespaces --all enters: not those the caller is in already, which
// setns(2) would refuse an unprivileged caller (EPERM) for nothing.
void dropShared(std::map<nsfd::NsType, nsfd::NsFd>& fds, const std::vector<nsfd::NsType>& named) {
    for (auto it = fds.begin(); it != fds.end();) {
        bool isNamed = std::find(named.begin(), named.end(), it->first) != named.end();
        bool shared = false;
        if (!isNamed) {
            // Both held open, so both alive: their nsfs inodes are distinct
            // unless they are the same namespace.
            try {
                shared = nsfd::NsFd::current(it->first).inode() == it->second.inode();
            } catch (const std::system_error&) {
                shared = false;  // a type this kernel lacks in /proc/self/ns
            }
        }
        it = shared ? fds.erase(it) : std::next(it);
    }
}

int exec(const Options& options, const nsfd::cli::ExecArguments& args) {
    std::vector<nsfd::NsType> types = args.named;
    if (args.all) {
        types.clear();
        for (nsfd::NsType type : nsfd::allNsTypes()) {
            if (type != nsfd::NsType::PidForChildren && type != nsfd::NsType::TimeForChildren) {
                types.push_back(type);
            }
        }
    }
    nsfd::Client client = connect(options);
    std::optional<nsfd::TrackedProcess> tracked;
    if (args.process.id) {
        tracked = trackedById(client, args.process);
    }
    std::optional<std::uint64_t> expectedId = tracked ? std::optional(tracked->id()) : std::nullopt;
    pid_t pid = tracked ? tracked->pid() : args.process.pid.value_or(0);
    if (args.process.selector) {
        nsfd::ProcessInfo info = client.info(*args.process.selector);
        if (info.pid == 0) {
            throw nsfd::NoSuchProcess(
                std::string(nsfd::dbusErrorName(nsfd::ErrorKind::NoSuchProcess)),
                args.process.text +
                    " is outside nsfdctl's pid namespace: exec enters what it "
                    "can see (use ns, or a program of libnsfd-client, for its fds)");
        }
        pid = info.pid;
        expectedId = info.id;
    }
    // A pidfd of our own names the process for what we read of /proc below:
    // if it is still alive after nsfdd answered, nsfdd answered about it.
    nsfd::PidFd pidfd = nsfd::PidFd::open(pid);
    if (expectedId && pidfd.id() != *expectedId) {
        throw nsfd::ProcessExited(std::string(nsfd::dbusErrorName(nsfd::ErrorKind::ProcessExited)),
                                  "Process " + args.process.text + " has exited");
    }
    // Without the privilege to enter them itself, nsfdd runs the command (Spawn).
    if (!nsfd::cli::canEnterItself(types)) {
        return nsfd::cli::runBrokered(client, pid, types, args);
    }
    std::map<nsfd::NsType, nsfd::NsFd> fds =
        tracked ? tracked->namespaceFds(types) : client.namespaceFds(pid, types);
    if (args.all) {
        dropShared(fds, args.named);
    }
    nsfd::cli::EnterOptions enter;
    enter.preserveCredentials = args.preserveCredentials;
    enter.fork = args.fork;
    std::optional<nsfd::cli::TargetFiles> target;
    if (args.env || args.root.given || args.wd.given || args.uid.follow || args.gid.follow) {
        target.emplace(pidfd);
    }
    if (args.uid.given) {
        enter.uid = args.uid.follow ? target->uid() : args.uid.value;
    }
    if (args.gid.given) {
        enter.gid = args.gid.follow ? target->gid() : args.gid.value;
    }
    if (args.root.given) {
        enter.root =
            args.root.path.empty() ? target->root() : nsfd::cli::openDirectory(args.root.path);
    }
    if (args.wd.given) {
        enter.workingDirectory = args.wd.path.empty() ? target->workingDirectory()
                                                      : nsfd::cli::openDirectory(args.wd.path);
    }
    if (args.env) {
        enter.environment = target->environment();
    }
    if (pidfd.hasExited()) {
        throw nsfd::ProcessExited(std::string(nsfd::dbusErrorName(nsfd::ErrorKind::ProcessExited)),
                                  "Process " + args.process.text + " has exited");
    }
    return nsfd::cli::runInNamespaces(std::move(fds), std::move(enter), args.command);
}

int exitCodeOf(const nsfd::Error& e) {
    if (dynamic_cast<const nsfd::DaemonUnavailable*>(&e) != nullptr) {
        return kDaemonUnavailable;
    }
    if (dynamic_cast<const nsfd::AccessDenied*>(&e) != nullptr) {
        return kAccessDenied;
    }
    if (dynamic_cast<const nsfd::NoSuchProcess*>(&e) != nullptr ||
        dynamic_cast<const nsfd::ProcessExited*>(&e) != nullptr ||
        dynamic_cast<const nsfd::NotTracked*>(&e) != nullptr) {
        return kNoSuchProcess;
    }
    if (dynamic_cast<const nsfd::InvalidArgument*>(&e) != nullptr) {
        return kBadArguments;
    }
    return kFailed;
}

// What nsfdctl itself was refused by the kernel (reading /proc, setns, ...).
int exitCodeOf(const std::system_error& e) {
    if (e.code() == std::errc::permission_denied ||
        e.code() == std::errc::operation_not_permitted) {
        return kAccessDenied;
    }
    if (e.code() == std::errc::no_such_process) {
        return kNoSuchProcess;
    }
    return kFailed;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"nsfdctl: namespaces, info and exits of processes, through nsfdd"};
    app.require_subcommand(1);
    Options options;
    app.add_option("--transport", options.transport,
                   "How to reach nsfdd: varlink (its socket), bus (D-Bus), or auto: the socket "
                   "when something listens there, else the bus")
        ->check(CLI::IsMember({"auto", "varlink", "bus"}));
    app.add_option("--bus", options.bus,
                   "D-Bus address of the bus nsfdd is on (default: system bus); implies "
                   "--transport=bus");
    app.add_flag("!--no-ask-password", options.askPassword,
                 "Never ask for a password (polkit), even on a terminal")
        ->disable_flag_override();
    app.add_flag("--json", options.json, "Print JSON, for scripts")->disable_flag_override();
    app.set_version_flag("--version", NSFD_VERSION);

    // Each argument is taken as text and read by cli/arguments.cpp, which
    // knows one spelling of it and says what it expected otherwise.
    std::string processText;
    std::vector<std::string> typeNames;
    std::string signalText;
    std::function<int()> run;
    constexpr const char* kProcessHelp =
        "A pid (4711), a tracked process by its nsfd id (id:5321 or /org/nsfd1/process/5321), or "
        "a target nsfdd resolves: container:ID (a unique prefix will do), cgroup:PATH, "
        "unit:NAME, machine:NAME, PID:ID";

    app.add_subcommand("status", "Daemon version, kernel features, tracked count")->callback([&] {
        run = [&] { return status(options); };
    });
    auto* trackCmd = app.add_subcommand("track", "Track a process; prints its object path");
    trackCmd
        ->add_option("PROCESS", processText,
                     "A pid (4711), or a target nsfdd resolves: container:ID, cgroup:PATH, "
                     "unit:NAME, machine:NAME, PID:ID")
        ->required();
    trackCmd->callback([&] {
        run = [&] {
            ProcessArgument process = nsfd::cli::parseProcess(processText, "PROCESS");
            if (process.id) {
                throw CLI::ValidationError("PROCESS",
                                           "expected a pid or a target such as "
                                           "container:ID, got the id of a tracked "
                                           "process, '" +
                                               processText + "'");
            }
            return track(options, process);
        };
    });
    auto* untrackCmd = app.add_subcommand("untrack", "Stop tracking a process");
    untrackCmd->add_option("PROCESS", processText, kProcessHelp)->required();
    untrackCmd->callback([&] {
        run = [&] { return untrack(options, nsfd::cli::parseProcess(processText, "PROCESS")); };
    });
    app.add_subcommand("list", "The tracked processes you may see")->callback([&] {
        run = [&] { return list(options); };
    });
    auto* infoCmd = app.add_subcommand("info", "Pid, parent, cgroup, credentials, state");
    infoCmd->add_option("PROCESS", processText, kProcessHelp)->required();
    infoCmd->callback([&] {
        run = [&] { return info(options, nsfd::cli::parseProcess(processText, "PROCESS")); };
    });
    auto* nsCmd = app.add_subcommand("ns", "Namespace types and ids of a process");
    nsCmd->add_option("PROCESS", processText, kProcessHelp)->required();
    nsCmd->add_option("TYPE", typeNames, "Namespace types (default: all)");
    nsCmd->callback([&] {
        run = [&] {
            ProcessArgument process = nsfd::cli::parseProcess(processText, "PROCESS");
            return namespaces(options, process, nsfd::cli::parseNsTypes(typeNames, "TYPE"));
        };
    });
    app.add_subcommand("watch", "Print exits of tracked processes as they happen (until Ctrl-C)")
        ->callback([&] { run = [&] { return watch(options); }; });
    auto* signalCmd = app.add_subcommand("signal", "Send a signal (name or number)");
    signalCmd->add_option("PROCESS", processText, kProcessHelp)->required();
    signalCmd->add_option("SIGNAL", signalText, "TERM, SIGKILL, 9, ...")->required();
    signalCmd->callback([&] {
        run = [&] {
            ProcessArgument process = nsfd::cli::parseProcess(processText, "PROCESS");
            return sendSignal(options, process, nsfd::cli::parseSignal(signalText, "SIGNAL"));
        };
    });

    std::string addressText;
    auto* connectCmd = app.add_subcommand(
        "connect",
        "Connect to ADDRESS inside the network namespace of PROCESS, as you, and copy stdin "
        "to it and it to stdout (as socat - ADDRESS)");
    connectCmd->add_option("PROCESS", processText, kProcessHelp)->required();
    connectCmd
        ->add_option("ADDRESS", addressText,
                     "tcp:HOST:PORT, udp:HOST:PORT, unix:PATH or unix:@NAME (abstract)")
        ->required();
    connectCmd->callback([&] {
        run = [&] {
            ProcessArgument process = nsfd::cli::parseProcess(processText, "PROCESS");
            nsfd::cli::SocketAddress address;
            try {
                address = nsfd::cli::parseSocketAddress(addressText);
            } catch (const std::invalid_argument& e) {
                throw CLI::ValidationError("ADDRESS", e.what());
            }
            return connectTo(options, process, address);
        };
    });

    // exec takes nsenter's options with getopt's spelling (-rDIR, --root=DIR,
    // -S UID): cli/arguments.cpp reads its words, CLI11 only hands them over.
    auto* execCmd = app.add_subcommand(
        "exec",
        "Run COMMAND in namespaces of PROCESS, as nsenter(1) does: exec [OPTIONS] "
        "PROCESS [OPTIONS] [--] COMMAND [ARGS...]");
    execCmd->prefix_command();
    execCmd->footer(nsfd::cli::kExecOptionsHelp);
    execCmd->callback([&] {
        run = [&]() -> int {
            nsfd::cli::ExecArguments args = nsfd::cli::parseExecArguments(execCmd->remaining());
            if (args.help) {
                std::cout << execCmd->help();
                return kOk;
            }
            return exec(options, args);
        };
    });

    try {
        // CLI11 still takes "--json=true" (and "=1", "=on") for --json: one spelling.
        for (int i = 1; i < argc && argv[i][0] == '-'; ++i) {
            if (std::strncmp(argv[i], "--json=", 7) == 0) {
                throw CLI::ValidationError("--json",
                                           "takes no value, got '" + std::string(argv[i]) + "'");
            }
            i += std::strcmp(argv[i], "--bus") == 0 || std::strcmp(argv[i], "--transport") == 0 ? 1
                                                                                                : 0;
        }
        app.parse(argc, argv);
        if (!options.bus.empty() && options.transport == "varlink") {
            throw CLI::ValidationError("--bus", "is a D-Bus address: not with --transport=varlink");
        }
        try {
            return run();
        } catch (const nsfd::InteractiveAuthorizationRequired&) {
            // As systemctl: polkit would allow it after authentication, and a
            // person is at the terminal. The refused call did nothing; make it
            // again, allowing authentication, with an agent to ask.
            if (!options.askPassword || ::isatty(STDIN_FILENO) != 1 ||
                usedTransport != nsfd::TransportKind::Varlink) {
                throw;
            }
            nsfd::cli::PolkitAgent agent = nsfd::cli::PolkitAgent::start();
            if (!agent.running()) {
                noAgent = true;
                throw;
            }
            options.interactive = true;
            return run();
        }
    } catch (const CLI::ParseError& e) {
        int code = app.exit(e);
        return code == 0 ? kOk : kBadArguments;
    } catch (const nsfd::InteractiveAuthorizationRequired& e) {
        std::cerr << "nsfdctl: " << e.what()
                  << (usedTransport == nsfd::TransportKind::Bus
                          ? " (nsfdctl can let polkit ask for a password over Varlink only)"
                      : noAgent ? " (nsfdctl could not start /usr/bin/pkttyagent to ask "
                                  "for a password: is polkitd installed?)"
                                : " (run nsfdctl on a terminal, without --no-ask-password, "
                                  "to authenticate)")
                  << '\n';
        return exitCodeOf(e);
    } catch (const nsfd::Error& e) {
        std::cerr << "nsfdctl: " << e.what() << '\n';
        return exitCodeOf(e);
    } catch (const std::system_error& e) {
        std::cerr << "nsfdctl: " << e.what() << '\n';
        return exitCodeOf(e);
    } catch (const std::exception& e) {
        std::cerr << "nsfdctl: " << e.what() << '\n';
        return kFailed;
    }
}
