// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdctl: nsfd from the shell. See nsfdctl(1).
#include <signal.h>
#include <sys/wait.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>

#include "enter.hpp"
#include "nsfd/client.hpp"

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
    bool json = false;
};

nsfd::Client connect(const Options& options) {
    return options.bus.empty() ? nsfd::Client::system() : nsfd::Client::connect(options.bus);
}

std::vector<nsfd::NsType> parseTypes(const std::vector<std::string>& names) {
    std::vector<nsfd::NsType> types;
    for (const std::string& name : names) {
        std::optional<nsfd::NsType> type = nsfd::parseNsType(name);
        if (!type) {
            throw CLI::ValidationError("TYPE", "unknown namespace type '" + name +
                                                   "' (cgroup ipc mnt net pid pid_for_children "
                                                   "time time_for_children user uts)");
        }
        types.push_back(*type);
    }
    return types;
}

int parseSignal(const std::string& text) {
    if (!text.empty() && std::isdigit(static_cast<unsigned char>(text[0]))) {
        return std::stoi(text);
    }
    std::string name = text.rfind("SIG", 0) == 0 ? text.substr(3) : text;
    for (int sig = 1; sig < NSIG; ++sig) {
        const char* abbrev = sigabbrev_np(sig);
        if (abbrev != nullptr && name == abbrev) {
            return sig;
        }
    }
    throw CLI::ValidationError("SIGNAL", "unknown signal '" + text + "'");
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
    if (options.json) {
        std::cout << json{{"version", version},
                          {"kernel_features", features},
                          {"tracked_processes", tracked}}
                  << '\n';
        return kOk;
    }
    std::string joined;
    for (const std::string& feature : features) {
        joined += (joined.empty() ? "" : " ") + feature;
    }
    printTable({{"Version:", version},
                {"Kernel features:", joined},
                {"Tracked processes:", std::to_string(tracked)}});
    return kOk;
}

int track(const Options& options, pid_t pid) {
    nsfd::Client client = connect(options);
    nsfd::TrackedProcess process = client.track(pid);
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

int untrack(const Options& options, std::uint64_t pidOrId) {
    nsfd::Client client = connect(options);
    for (const nsfd::ProcessEntry& entry : client.list()) {
        if (entry.id == pidOrId) {
            client.process(entry.pid).untrack();
            return kOk;
        }
    }
    client.process(static_cast<pid_t>(pidOrId)).untrack();
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

int info(const Options& options, pid_t pid) {
    nsfd::Client client = connect(options);
    nsfd::ProcessInfo info = client.info(pid);
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

int namespaces(const Options& options, pid_t pid, const std::vector<std::string>& names) {
    nsfd::Client client = connect(options);
    std::vector<nsfd::NsType> types = parseTypes(names);
    std::map<nsfd::NsType, nsfd::NsFd> fds = client.namespaceFds(pid, types);
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

int sendSignal(const Options& options, pid_t pid, const std::string& signalName) {
    int signal = parseSignal(signalName);
    nsfd::Client client = connect(options);
    std::optional<nsfd::TrackedProcess> process;
    bool trackedHere = false;
    try {
        process = client.process(pid);
    } catch (const nsfd::NotTracked&) {
        process = client.track(pid);
        trackedHere = true;
    }
    process->signal(signal);
    if (trackedHere) {
        process->untrack();
    }
    return kOk;
}

int exec(const Options& options, pid_t pid, const std::vector<std::string>& names,
         const std::vector<std::string>& command) {
    std::vector<nsfd::NsType> types = parseTypes(names);
    nsfd::Client client = connect(options);
    std::map<nsfd::NsType, nsfd::NsFd> fds = client.namespaceFds(pid, types);
    // pid_for_children and time_for_children are what a new child would get:
    // for exec, "pid" means the process's own pid namespace, as for nsenter.
    fds.erase(nsfd::NsType::PidForChildren);
    fds.erase(nsfd::NsType::TimeForChildren);
    return nsfd::cli::runInNamespaces(std::move(fds), command);
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

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"nsfdctl: namespaces, info and exits of processes, through nsfdd"};
    app.require_subcommand(1);
    Options options;
    app.add_option("--bus", options.bus,
                   "D-Bus address of the bus nsfdd is on (default: system bus)");
    app.add_flag("--json", options.json, "Print JSON, for scripts");
    app.set_version_flag("--version", NSFD_VERSION);

    pid_t pid = 0;
    std::uint64_t pidOrId = 0;
    std::vector<std::string> types;
    std::string signalName;
    std::vector<std::string> command;
    std::function<int()> run;

    app.add_subcommand("status", "Daemon version, kernel features, tracked count")->callback([&] {
        run = [&] { return status(options); };
    });
    auto* trackCmd = app.add_subcommand("track", "Track a process; prints its object path");
    trackCmd->add_option("PID", pid, "Process id")->required()->check(CLI::PositiveNumber);
    trackCmd->callback([&] { run = [&] { return track(options, pid); }; });
    auto* untrackCmd = app.add_subcommand("untrack", "Stop tracking a process");
    untrackCmd->add_option("PID|ID", pidOrId, "Process id or nsfd id")->required();
    untrackCmd->callback([&] { run = [&] { return untrack(options, pidOrId); }; });
    app.add_subcommand("list", "The tracked processes you may see")->callback([&] {
        run = [&] { return list(options); };
    });
    auto* infoCmd = app.add_subcommand("info", "Pid, parent, cgroup, credentials, state");
    infoCmd->add_option("PID", pid, "Process id")->required()->check(CLI::PositiveNumber);
    infoCmd->callback([&] { run = [&] { return info(options, pid); }; });
    auto* nsCmd = app.add_subcommand("ns", "Namespace types and ids of a process");
    nsCmd->add_option("PID", pid, "Process id")->required()->check(CLI::PositiveNumber);
    nsCmd->add_option("TYPE", types, "Namespace types (default: all)");
    nsCmd->callback([&] { run = [&] { return namespaces(options, pid, types); }; });
    app.add_subcommand("watch", "Print exits of tracked processes as they happen (until Ctrl-C)")
        ->callback([&] { run = [&] { return watch(options); }; });
    auto* signalCmd = app.add_subcommand("signal", "Send a signal (name or number)");
    signalCmd->add_option("PID", pid, "Process id")->required()->check(CLI::PositiveNumber);
    signalCmd->add_option("SIGNAL", signalName, "TERM, SIGKILL, 9, ...")->required();
    signalCmd->callback([&] { run = [&] { return sendSignal(options, pid, signalName); }; });

    auto* execCmd =
        app.add_subcommand("exec", "Run COMMAND in namespaces of process PID, as nsenter(1) does");
    execCmd->add_option("PID", pid, "Process id")->required()->check(CLI::PositiveNumber);
    std::map<std::string, bool> flags;
    for (const char* type : {"net", "mnt", "uts", "ipc", "pid", "cgroup", "time", "user"}) {
        execCmd->add_flag(std::string("--") + type, flags[type],
                          std::string("Enter its ") + type + " namespace");
    }
    bool all = false;
    execCmd->add_flag("--all", all, "Enter all its namespaces");
    execCmd->add_option("COMMAND", command, "Command and arguments")->required();
    execCmd->prefix_command();
    execCmd->callback([&] {
        run = [&] {
            std::vector<std::string> wanted;
            for (const auto& [type, set] : flags) {
                if (set || all) {
                    wanted.push_back(type);
                }
            }
            if (wanted.empty()) {
                throw CLI::ValidationError("exec",
                                           "name at least one namespace (--net, ..., --all)");
            }
            return exec(options, pid, wanted, command);
        };
    });

    try {
        app.parse(argc, argv);
        return run();
    } catch (const CLI::ParseError& e) {
        int code = app.exit(e);
        return code == 0 ? kOk : kBadArguments;
    } catch (const nsfd::Error& e) {
        std::cerr << "nsfdctl: " << e.what() << '\n';
        return exitCodeOf(e);
    } catch (const std::system_error& e) {
        std::cerr << "nsfdctl: " << e.what() << '\n';
        return kFailed;
    } catch (const std::exception& e) {
        std::cerr << "nsfdctl: " << e.what() << '\n';
        return kFailed;
    }
}
