// SPDX-License-Identifier: LGPL-2.1-or-later
// org.nsfd1.Manager's methods (contract/org.nsfd1.Manager.varlink): the D-Bus
// Manager and Process methods, a process named by "pid", "pidfd" or "id".
#include <algorithm>
#include <csignal>
#include <initializer_list>
#include <limits>

#include "manager_varlink.hpp"
#include "nsfd/features.hpp"
#include "version.hpp"

namespace nsfd::daemon::varlink {

namespace {

constexpr std::uint64_t kMaxInt32 = std::numeric_limits<std::int32_t>::max();

// -- decoding: the server checked every call against the IDL (names, types,
// required fields); here, the values' ranges, each error naming its parameter --

// `name` is a literal: a string is made of it only for an error.
std::optional<std::uint64_t> readOptional(const Parameters& parameters, std::string_view name,
                                          std::uint64_t min, std::uint64_t max) {
    const Json* value = parameters.find(name);
    if (value == nullptr || value->is_null()) {
        return std::nullopt;
    }
    if (!value->is_number_unsigned() || value->get<std::uint64_t>() < min ||
        value->get<std::uint64_t>() > max) {
        throw ParameterError(name, "Invalid " + std::string(name) + " " + value->dump() +
                                       " (expected an integer from " + std::to_string(min) +
                                       " to " + std::to_string(max) + ")");
    }
    return value->get<std::uint64_t>();
}

std::uint64_t readRequired(const Parameters& parameters, std::string_view name, std::uint64_t min,
                           std::uint64_t max) {
    std::optional<std::uint64_t> value = readOptional(parameters, name, min, max);
    if (!value) {
        throw ParameterError(name, "Missing parameter '" + std::string(name) + "'");
    }
    return *value;
}

std::optional<std::uint32_t> readPid(const Parameters& parameters, bool required = false) {
    std::optional<std::uint64_t> pid = readOptional(parameters, "pid", 1, kMaxInt32);
    if (required && !pid) {
        throw ParameterError("pid", "Missing parameter 'pid'");
    }
    return pid ? std::optional(static_cast<std::uint32_t>(*pid)) : std::nullopt;
}

std::uint64_t readId(const Parameters& parameters) {
    return readRequired(parameters, "id", 1, std::numeric_limits<std::uint64_t>::max());
}

NsType toNsType(const std::string& parameter, const Json& value) {
    std::optional<NsType> type =
        value.is_string() ? parseNsType(value.get<std::string>()) : std::nullopt;
    if (!type) {
        throw ParameterError(parameter, "Unknown namespace type " + value.dump() +
                                            " (expected one of: cgroup ipc mnt net pid "
                                            "pid_for_children time time_for_children user uts)");
    }
    return *type;
}

NsType readNsType(const Parameters& parameters) {
    const Json* value = parameters.find("type");
    if (value == nullptr) {
        throw ParameterError("type", "Missing parameter 'type'");
    }
    return toNsType("type", *value);
}

std::vector<NsType> readNsTypes(const Parameters& parameters) {
    const Json* value = parameters.find("types");
    std::vector<NsType> types;
    if (value == nullptr || value->is_null()) {
        return types;
    }
    if (!value->is_array()) {
        throw ParameterError("types", "Invalid types " + value->dump() + " (expected a list)");
    }
    for (const Json& name : *value) {
        types.push_back(toNsType("types", name));
    }
    return types;
}

// A process named by exactly one of "pid", "id", "pidfd" (the index of a
// pidfd sent with the call) and "selector" (container:ID, ...: resolver.hpp).
struct Given {
    std::optional<std::uint32_t> pid;
    std::optional<std::uint64_t> id;
    std::optional<std::uint64_t> pidfd;
    std::optional<std::string> selector;
};

std::optional<std::string> readSelector(const Parameters& parameters) {
    const Json* value = parameters.find("selector");
    if (value == nullptr || value->is_null()) {
        return std::nullopt;
    }
    if (!value->is_string()) {
        throw ParameterError("selector", "Invalid selector " + value->dump() +
                                             " (expected a string such as container:ID)");
    }
    return value->get<std::string>();
}

Given readGiven(const Parameters& parameters) {
    Given named{readPid(parameters),
                readOptional(parameters, "id", 1, std::numeric_limits<std::uint64_t>::max()),
                readOptional(parameters, "pidfd", 0, kMaxInt32), readSelector(parameters)};
    int given = named.pid.has_value() + named.id.has_value() + named.pidfd.has_value() +
                named.selector.has_value();
    if (given != 1) {
        throw ParameterError(given == 0       ? "pid"
                             : named.selector ? "selector"
                             : named.pidfd    ? "pidfd"
                                              : "id",
                             std::string(given == 0 ? "Neither" : "More than one of") +
                                 " pid, id, pidfd and selector given: name the process by one "
                                 "of them");
    }
    return named;
}

// The pidfd sent with the call as its fd number `index`.
PidFd passedPidFd(Manager& core, Call& call, std::uint64_t index) {
    UniqueFd fd = call.takeFd(index);
    if (!fd.ok()) {
        throw ParameterError("pidfd", "No fd " + std::to_string(index) + " came with the call");
    }
    try {
        return core.adoptPidFd(std::move(fd));
    } catch (const ServiceError& e) {
        if (e.kind() == ErrorKind::InvalidArgs) {
            throw ParameterError("pidfd", e.what());
        }
        throw;
    }
}

// What `given` names, for the core to resolve: a pidfd is taken from the call now.
Named namedOf(Manager& core, Call& call, const Given& given) {
    if (given.pid) {
        return Named::byPid(*given.pid);
    }
    if (given.id) {
        return Named::byId(*given.id);
    }
    if (given.pidfd) {
        return Named::byPidFd(passedPidFd(core, call, *given.pidfd));
    }
    return Named::bySelector(*given.selector);
}

// Calls `then(resolution, caller)` with the process `named` resolved for
// `action` by the core (Manager::resolve): now, or, for a selector, once the
// core found it and the caller may see it; answers the call with the error
// otherwise. `caller` is passed on, not captured by `then`: copied only when
// the answer comes later (a Caller's copy is an allocation of its groups).
template <typename Then>
void resolveThen(Manager& core, const CallPtr& call, const Caller& caller, const Named& named,
                 Action action, Then then) {
    if (named.kind != Named::Kind::Selector) {
        // At once: no callbacks to allocate on a call's hot path.
        try {
            then(core.resolveNow(caller, named, action), caller);
        } catch (...) {
            replyCurrentError(*call);
        }
        return;
    }
    core.resolve(
        caller, named, action,
        [call, caller, then = std::move(then)](Resolution resolution) {
            try {
                then(std::move(resolution), caller);
            } catch (...) {
                replyCurrentError(*call);
            }
        },
        [call](const std::exception_ptr& error) {
            try {
                std::rethrow_exception(error);
            } catch (...) {
                replyCurrentError(*call);
            }
        });
}

template <typename Then>
void resolveThen(Manager& core, const CallPtr& call, const Caller& caller, const Given& given,
                 Action action, Then then) {
    resolveThen(core, call, caller, namedOf(core, *call, given), action, std::move(then));
}

// Both steps at once, for an action that needs nothing but its target:
// resolves (resolveThen), authorizes (VarlinkEndpoint::authorizeThen), then
// runs `body(call, process)` (a ProcessRef).
template <typename NamedOrGiven, typename Body>
void authorizeThen(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller,
                   const NamedOrGiven& named, Action action, Body body) {
    resolveThen(ep.core(), call, caller, named, action,
                [&ep, call, body](Resolution r, const Caller& caller) {
                    ep.authorizeThen(call, caller, r.request,
                                     [body, process = r.process](Call& c) { body(c, process); });
                });
}

std::vector<UniqueFd> oneFd(UniqueFd fd) {
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(fd));
    return fds;
}

// The info object (keys: nsfd/contract.hpp), as replyInfo builds the D-Bus one.
Json infoJson(const ProcessView& view) {
    namespace key = nsfd::info_key;
    Json out = {{key::kId, view.id}, {key::kState, std::string(toString(view.state))}};
    if (view.info.pid()) {
        out[key::kPid] = view.pid;
        out[key::kThreadGroupId] = view.pid;  // a tracked process is a thread-group leader
        out[key::kParentPid] = view.parentPid;
    }
    if (view.info.cgroupId()) {
        out[key::kCgroupId] = static_cast<std::uint64_t>(*view.info.cgroupId());
    }
    if (std::optional<Credentials> c = view.info.credentials()) {
        out[key::kRuid] = c->ruid;
        out[key::kEuid] = c->euid;
        out[key::kSuid] = c->suid;
        out[key::kFsuid] = c->fsuid;
        out[key::kRgid] = c->rgid;
        out[key::kEgid] = c->egid;
        out[key::kSgid] = c->sgid;
        out[key::kFsgid] = c->fsgid;
    }
    if (view.exitStatus) {
        out[key::kExitStatus] = *view.exitStatus;
    }
    return out;
}

// -- the methods: decode, resolve, authorize, core, encode --

void getNamespace(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    Given given = readGiven(call->parameters());
    NsType type = readNsType(call->parameters());
    resolveThen(
        ep.core(), call, caller, given, Action::GetNamespace,
        [&ep, call, type](Resolution r, const Caller& caller) {
            r.request.namespaces = {type};
            ep.authorizeThen(
                call, caller, r.request, [&core = ep.core(), process = r.process, type](Call& c) {
                    c.replyWithFd(UniqueFd(core.namespaceFd(process.pidfd(), type).release()));
                });
        });
}

void getNamespaces(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    Given given = readGiven(call->parameters());
    std::vector<NsType> types = readNsTypes(call->parameters());
    resolveThen(ep.core(), call, caller, given, Action::GetNamespace,
                [&ep, call, types](Resolution r, const Caller& caller) {
                    r.request.namespaces = Manager::requestedTypes(types);
                    ep.authorizeThen(
                        call, caller, r.request,
                        [&core = ep.core(), process = r.process, types](Call& c) {
                            Json namespaces = Json::object();
                            std::vector<UniqueFd> fds;
                            for (auto& [type, fd] : core.namespaceFds(process.pidfd(), types)) {
                                namespaces[std::string(toString(type))] = fds.size();
                                fds.emplace_back(fd.release());
                            }
                            c.reply({{"namespaces", std::move(namespaces)}}, std::move(fds));
                        });
                });
}

void getNamespaceIds(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    Given given = readGiven(call->parameters());
    authorizeThen(ep, call, caller, given, Action::ReadInfo,
                  [&core = ep.core()](Call& c, const ProcessRef& process) {
                      c.reply({{"ids", core.namespaceIds(process.pidfd())}});
                  });
}

void trackProcess(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    const Parameters& parameters = call->parameters();
    Given given{readPid(parameters), std::nullopt, readOptional(parameters, "pidfd", 0, kMaxInt32),
                readSelector(parameters)};
    if (given.pid.has_value() + given.pidfd.has_value() + given.selector.has_value() != 1) {
        throw ParameterError("pid", "Name the process by exactly one of pid, pidfd and selector");
    }
    authorizeThen(ep, call, caller, given, Action::Track,
                  [&core = ep.core(), caller](Call& c, const ProcessRef& process) {
                      TrackedProcess& tracked = core.track(caller, process.take());
                      c.reply({{"id", tracked.id()}, {"pid", core.pidFor(caller, tracked.pid())}});
                  });
}

void untrackProcess(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    authorizeThen(ep, call, caller, Named::byId(readId(call->parameters())), Action::Untrack,
                  [&core = ep.core(), caller](Call& c, const ProcessRef& process) {
                      core.untrack(caller, *process.trackedId());
                      c.reply();
                  });
}

void getProcess(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    authorizeThen(ep, call, caller, Named::byTrackedPid(*readPid(call->parameters(), true)),
                  Action::ReadInfo, [](Call& c, const ProcessRef& process) {
                      c.reply({{"id", *process.trackedId()}});
                  });
}

void listProcesses(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    // What the caller may see is decided per process, synchronously (visibleProcesses).
    Json processes = Json::array();
    for (TrackedProcess* process : ep.core().visibleProcesses(&caller)) {
        processes.push_back(
            {{"pid", ep.core().pidFor(caller, process->pid())}, {"id", process->id()}});
    }
    call->reply({{"processes", std::move(processes)}});
}

void getProcessInfo(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    Given given = readGiven(call->parameters());
    authorizeThen(ep, call, caller, given, Action::ReadInfo,
                  [&core = ep.core(), caller](Call& c, const ProcessRef& process) {
                      c.reply({{"info", infoJson(core.view(caller, process))}});
                  });
}

void getPidFd(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    authorizeThen(ep, call, caller, Named::byId(readId(call->parameters())), Action::GetPidFd,
                  [&core = ep.core()](Call& c, const ProcessRef& process) {
                      c.replyWithFd(core.duplicatePidFd(process.pidfd()));
                  });
}

void sendSignal(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    Given given = readGiven(call->parameters());
    auto signal = static_cast<int>(
        readRequired(call->parameters(), "signal", 0, static_cast<std::uint64_t>(SIGRTMAX)));
    resolveThen(ep.core(), call, caller, given, Action::SendSignal,
                [&ep, call, signal](Resolution r, const Caller& caller) {
                    r.request.signal = signal;
                    ep.authorizeThen(call, caller, r.request,
                                     [&core = ep.core(), process = r.process, signal](Call& c) {
                                         core.sendSignal(process.pidfd(), signal);
                                         c.reply();
                                     });
                });
}

void getFd(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    std::uint64_t id = readId(call->parameters());
    auto targetFd = static_cast<int>(readRequired(call->parameters(), "fd", 0, kMaxInt32));
    authorizeThen(ep, call, caller, Named::byId(id), Action::GetFd,
                  [&core = ep.core(), targetFd](Call& c, const ProcessRef& process) {
                      c.replyWithFd(core.getFd(process.pidfd(), targetFd));
                  });
}

// socket(2)'s integer arguments as written: any int64, checked by the core.
std::int64_t readInteger(const Parameters& parameters, std::string_view name) {
    const Json* value = parameters.find(name);
    if (value == nullptr || value->is_null()) {
        throw ParameterError(name, "Missing parameter '" + std::string(name) + "'");
    }
    if (!value->is_number_integer()) {
        throw ParameterError(
            name, "Invalid " + std::string(name) + " " + value->dump() + " (expected an integer)");
    }
    if (value->is_number_unsigned() &&
        value->get<std::uint64_t>() >
            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw ParameterError(name,
                             "Invalid " + std::string(name) + " " + value->dump() + " (too large)");
    }
    return value->get<std::int64_t>();
}

SocketSpec readSocketSpec(const Parameters& parameters) {
    std::int64_t family = readInteger(parameters, "family");
    std::int64_t type = readInteger(parameters, "type");
    std::int64_t protocol = readInteger(parameters, "protocol");
    try {
        return Manager::socketSpec(family, type, protocol);
    } catch (const ServiceError& e) {
        std::string_view what = e.what();
        throw ParameterError(what.find("family") != std::string_view::npos ? "family"
                             : what.find("type") != std::string_view::npos ? "type"
                                                                           : "protocol",
                             e.what());
    }
}

void openSocket(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    Given given = readGiven(call->parameters());
    SocketSpec spec = readSocketSpec(call->parameters());
    resolveThen(ep.core(), call, caller, given, Action::OpenSocket,
                [&ep, call, spec](Resolution r, const Caller& caller) {
                    r.request.socket = spec;
                    ep.authorizeThen(
                        call, caller, r.request,
                        [&core = ep.core(), caller, process = r.process, spec, held = call](Call&) {
                            core.openSocket(
                                caller, process.pidfd(), spec,
                                [held](UniqueFd socket, const std::exception_ptr& error) {
                                    try {
                                        if (error) {
                                            std::rethrow_exception(error);
                                        }
                                        held->replyWithFd(std::move(socket));
                                    } catch (...) {
                                        replyCurrentError(*held);
                                    }
                                });
                        });
                });
}

// -- Spawn: a brokered run; its first reply {pid, pidfd}, its last {waitStatus} --

std::vector<std::string> readStrings(const Parameters& parameters, std::string_view name) {
    const Json* value = parameters.find(name);
    if (value == nullptr || !value->is_array()) {
        throw ParameterError(name,
                             "Missing parameter '" + std::string(name) + "' (a list of strings)");
    }
    std::vector<std::string> out;
    for (const Json& item : *value) {
        if (!item.is_string() ||
            item.get_ref<const std::string&>().find('\0') != std::string::npos) {
            throw ParameterError(name, "Invalid " + std::string(name) + " entry " +
                                           item.dump().substr(0, 80) +
                                           " (expected a string without NUL)");
        }
        out.push_back(item.get<std::string>());
    }
    return out;
}

// The spawn types, each once, among net, uts and ipc.
std::vector<NsType> readSpawnTypes(const Parameters& parameters) {
    const Json* value = parameters.find("namespaces");
    if (value == nullptr || !value->is_array() || value->empty()) {
        throw ParameterError("namespaces",
                             "Missing parameter 'namespaces' (a list of net, uts and ipc)");
    }
    std::vector<NsType> types;
    for (const Json& name : *value) {
        NsType type = toNsType("namespaces", name);
        if (type != NsType::Net && type != NsType::Uts && type != NsType::Ipc) {
            throw ParameterError(
                "namespaces", "Spawn enters net, uts and ipc namespaces only, not " + name.dump() +
                                  ": the command keeps the caller's own mount, pid, user, "
                                  "cgroup and time namespaces, as the caller it runs as");
        }
        if (std::find(types.begin(), types.end(), type) != types.end()) {
            throw ParameterError("namespaces", "Namespace type " + name.dump() + " given twice");
        }
        types.push_back(type);
    }
    return types;
}

UniqueFd readPassedFd(Call& call, const char* name) {
    std::uint64_t index = readRequired(call.parameters(), name, 0, kMaxInt32);
    UniqueFd fd = call.takeFd(index);
    if (!fd.ok()) {
        throw ParameterError(name, "No fd " + std::to_string(index) + " came with the call for " +
                                       name + " (or it was given for another parameter too)");
    }
    return fd;
}

std::shared_ptr<SpawnSpec> readSpawnSpec(Call& call) {
    const Parameters& parameters = call.parameters();
    auto spec = std::make_shared<SpawnSpec>();
    spec->namespaces = readSpawnTypes(parameters);
    spec->argv = readStrings(parameters, "argv");
    if (spec->argv.empty() || spec->argv[0].empty()) {
        throw ParameterError("argv", "argv is empty: name the command to run");
    }
    spec->environment = readStrings(parameters, "environment");
    std::size_t bytes = 0;
    for (const auto* list : {&spec->argv, &spec->environment}) {
        for (const std::string& entry : *list) {
            bytes += entry.size() + 1;
        }
    }
    std::size_t strings = spec->argv.size() + spec->environment.size();
    if (bytes > spawn_limit::kArgumentBytes || strings > spawn_limit::kStrings) {
        throw ServiceError(ErrorKind::LimitExceeded,
                           "argv and environment take " + std::to_string(bytes) + " bytes in " +
                               std::to_string(strings) + " strings; Spawn takes at most " +
                               std::to_string(spawn_limit::kArgumentBytes) + " bytes in " +
                               std::to_string(spawn_limit::kStrings));
    }
    spec->stdinFd = readPassedFd(call, "stdin");
    spec->stdoutFd = readPassedFd(call, "stdout");
    spec->stderrFd = readPassedFd(call, "stderr");
    spec->workingDirectory = readPassedFd(call, "workingDirectory");
    return spec;
}

void spawn(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    // The server refused a call without "more" (the IDL requires it).
    Given given = readGiven(call->parameters());
    std::shared_ptr<SpawnSpec> spec = readSpawnSpec(*call);
    resolveThen(
        ep.core(), call, caller, given, Action::Enter,
        [&ep, call, spec](Resolution r, const Caller& caller) {
            r.request.namespaces = spec->namespaces;
            r.request.command = spec->argv[0];
            ep.authorizeThen(
                call, caller, r.request,
                [&core = ep.core(), caller, process = r.process, spec, held = call](Call&) {
                    if (!held->connected()) {
                        return;  // the caller went while polkit thought: nothing runs
                    }
                    CommandRunner::Events events;
                    events.started = [held](pid_t pid, UniqueFd command) {
                        held->notify({{"pid", pid}, {"pidfd", 0}}, oneFd(std::move(command)));
                    };
                    events.exited = [held](int status) { held->reply({{"waitStatus", status}}); };
                    events.failed = [held](const std::exception_ptr& error) {
                        try {
                            std::rethrow_exception(error);
                        } catch (...) {
                            replyCurrentError(*held);
                        }
                    };
                    std::uint64_t run =
                        core.spawn(caller, process.pidfd(), std::move(*spec), std::move(events));
                    held->onDisconnect([&core, run] { core.commandRunner().cancel(run); });
                });
        });
}

void getServiceInfo(VarlinkEndpoint& ep, const CallPtr& call, const Caller& /*caller*/) {
    Json features = Json::array();
    for (std::string_view name : kernelFeatures().names()) {
        features.push_back(std::string(name));
    }
    call->reply({{"version", kVersion},
                 {"trackedProcesses", ep.core().trackedCount()},
                 {"kernelFeatures", std::move(features)}});
}

void watchExits(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    // Anyone may watch: the stream tells only of processes the caller may see.
    ep.watchExits(
        call, caller,
        readOptional(call->parameters(), "id", 1, std::numeric_limits<std::uint64_t>::max()));
}

using Method = void (*)(VarlinkEndpoint&, const CallPtr&, const Caller&);

}  // namespace

void addManagerMethods(varlink::Server& server, VarlinkEndpoint& endpoint) {
    auto add = [&](const char* name, Method method, varlink::MethodFlags flags = {}) {
        server.addMethod(
            std::string("org.nsfd1.Manager.") + name,
            [&endpoint, method](const CallPtr& call) {
                try {
                    method(endpoint, call, endpoint.callerOf(*call));
                } catch (...) {
                    replyCurrentError(*call);
                }
            },
            flags);
    };
    add("GetNamespace", getNamespace, varlink::kTakesFds);
    add("GetNamespaces", getNamespaces, varlink::kTakesFds);
    add("GetNamespaceIds", getNamespaceIds, varlink::kTakesFds);
    add("OpenSocket", openSocket, varlink::kTakesFds);
    add("Spawn", spawn, varlink::kTakesFds);
    add("TrackProcess", trackProcess, varlink::kTakesFds);
    add("UntrackProcess", untrackProcess);
    add("GetProcess", getProcess);
    add("ListProcesses", listProcesses);
    add("GetProcessInfo", getProcessInfo, varlink::kTakesFds);
    add("GetPidFd", getPidFd);
    add("SendSignal", sendSignal, varlink::kTakesFds);
    add("GetFd", getFd);
    add("GetServiceInfo", getServiceInfo);
    add("WatchExits", watchExits);
}

}  // namespace nsfd::daemon::varlink
