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

std::optional<std::uint64_t> readOptional(const Json& parameters, const std::string& name,
                                          std::uint64_t min, std::uint64_t max) {
    auto it = parameters.find(name);
    if (it == parameters.end() || it->is_null()) {
        return std::nullopt;
    }
    if (!it->is_number_unsigned() || it->get<std::uint64_t>() < min ||
        it->get<std::uint64_t>() > max) {
        throw ParameterError(name, "Invalid " + name + " " + it->dump() +
                                       " (expected an integer from " + std::to_string(min) +
                                       " to " + std::to_string(max) + ")");
    }
    return it->get<std::uint64_t>();
}

std::uint64_t readRequired(const Json& parameters, const std::string& name, std::uint64_t min,
                           std::uint64_t max) {
    std::optional<std::uint64_t> value = readOptional(parameters, name, min, max);
    if (!value) {
        throw ParameterError(name, "Missing parameter '" + name + "'");
    }
    return *value;
}

std::optional<std::uint32_t> readPid(const Json& parameters, bool required = false) {
    std::optional<std::uint64_t> pid = readOptional(parameters, "pid", 1, kMaxInt32);
    if (required && !pid) {
        throw ParameterError("pid", "Missing parameter 'pid'");
    }
    return pid ? std::optional(static_cast<std::uint32_t>(*pid)) : std::nullopt;
}

std::uint64_t readId(const Json& parameters) {
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

NsType readNsType(const Json& parameters) {
    auto it = parameters.find("type");
    if (it == parameters.end()) {
        throw ParameterError("type", "Missing parameter 'type'");
    }
    return toNsType("type", *it);
}

std::vector<NsType> readNsTypes(const Json& parameters) {
    auto it = parameters.find("types");
    std::vector<NsType> types;
    if (it == parameters.end() || it->is_null()) {
        return types;
    }
    if (!it->is_array()) {
        throw ParameterError("types", "Invalid types " + it->dump() + " (expected a list)");
    }
    for (const Json& name : *it) {
        types.push_back(toNsType("types", name));
    }
    return types;
}

// A process named by exactly one of "pid", "id", "pidfd" (the index of a
// pidfd sent with the call) and "selector" (container:ID, ...: resolver.hpp).
struct Named {
    std::optional<std::uint32_t> pid;
    std::optional<std::uint64_t> id;
    std::optional<std::uint64_t> pidfd;
    std::optional<std::string> selector;
};

std::optional<std::string> readSelector(const Json& parameters) {
    auto it = parameters.find("selector");
    if (it == parameters.end() || it->is_null()) {
        return std::nullopt;
    }
    if (!it->is_string()) {
        throw ParameterError("selector", "Invalid selector " + it->dump() +
                                             " (expected a string such as container:ID)");
    }
    return it->get<std::string>();
}

Named readNamed(const Json& parameters) {
    Named named{readPid(parameters),
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

// -- the process a call acts on, once authorized --

// A pidfd the handler opened, or a tracked process looked up again by id.
using PidFdOf = std::function<const PidFd&()>;

PidFdOf heldPidFd(PidFd pidfd) {
    auto held = std::make_shared<PidFd>(std::move(pidfd));
    return [held]() -> const PidFd& { return *held; };
}

TrackedProcess& stillTracked(Manager& core, std::uint64_t id) {
    TrackedProcess* process = core.find(id);
    if (process == nullptr) {
        throw ServiceError(ErrorKind::NotTracked,
                           "Process " + std::to_string(id) + " was untracked meanwhile");
    }
    return *process;
}

PidFdOf trackedPidFd(Manager& core, std::uint64_t id) {
    return [&core, id]() -> const PidFd& { return stillTracked(core, id).pidfd(); };
}

struct Resolved {
    Target target;
    PidFdOf pidfd;
};

Resolved resolve(Manager& core, Call& call, const Caller& caller, const Named& named,
                 Action action) {
    if (!named.id) {
        PidFd pidfd =
            named.pid ? core.openPid(caller, *named.pid) : passedPidFd(core, call, *named.pidfd);
        Target target = core.targetOf(caller, pidfd, action);
        return {std::move(target), heldPidFd(std::move(pidfd))};
    }
    TrackedProcess& process = core.tracked(caller, *named.id);
    return {core.targetOf(caller, process, action), trackedPidFd(core, process.id())};
}

// Calls `then` with the process `named` names: now, or, for a selector, once
// the core resolved it and found the caller may see it (Manager::resolve);
// answers the call with the error otherwise.
template <typename Then>
void resolveThen(Manager& core, const CallPtr& call, const Caller& caller, const Named& named,
                 Action action, Then then) {
    if (!named.selector) {
        then(resolve(core, *call, caller, named, action));
        return;
    }
    core.resolve(
        caller, *named.selector,
        [&core, call, caller, action, then = std::move(then)](PidFd pidfd) {
            try {
                Target target = core.targetOf(caller, pidfd, action);
                then(Resolved{std::move(target), heldPidFd(std::move(pidfd))});
            } catch (...) {
                replyCurrentError(*call);
            }
        },
        [call](const ServiceError& e) { replyError(*call, e.kind(), e.what()); });
}

std::vector<UniqueFd> oneFd(UniqueFd fd) {
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(fd));
    return fds;
}

// The info object (keys: nsfd/contract.hpp), as replyInfo builds the D-Bus one.
Json infoJson(const Info& info, std::uint64_t id, ProcessState state, std::optional<int> exitStatus,
              std::uint32_t pid, std::uint32_t parentPid) {
    namespace key = nsfd::info_key;
    Json out = {{key::kId, id}, {key::kState, std::string(toString(state))}};
    if (info.pid()) {
        out[key::kPid] = pid;
        out[key::kThreadGroupId] = pid;  // a tracked process is a thread-group leader
        out[key::kParentPid] = parentPid;
    }
    if (info.cgroupId()) {
        out[key::kCgroupId] = static_cast<std::uint64_t>(*info.cgroupId());
    }
    if (std::optional<Credentials> c = info.credentials()) {
        out[key::kRuid] = c->ruid;
        out[key::kEuid] = c->euid;
        out[key::kSuid] = c->suid;
        out[key::kFsuid] = c->fsuid;
        out[key::kRgid] = c->rgid;
        out[key::kEgid] = c->egid;
        out[key::kSgid] = c->sgid;
        out[key::kFsgid] = c->fsgid;
    }
    if (exitStatus) {
        out[key::kExitStatus] = *exitStatus;
    }
    return out;
}

// -- the methods: decode, authorize, core, encode --

void getNamespace(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    Named named = readNamed(call->parameters());
    NsType type = readNsType(call->parameters());
    resolveThen(ep.core(), call, caller, named, Action::GetNamespace,
                [&ep, call, caller, type](Resolved r) {
                    Request request{Action::GetNamespace, std::move(r.target), {type}, 0};
                    ep.authorizeThen(
                        call, caller, request, [&core = ep.core(), pidfd = r.pidfd, type](Call& c) {
                            c.reply({{"fileDescriptor", 0}},
                                    oneFd(UniqueFd(core.namespaceFd(pidfd(), type).release())));
                        });
                });
}

void getNamespaces(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    Named named = readNamed(call->parameters());
    std::vector<NsType> types = readNsTypes(call->parameters());
    resolveThen(ep.core(), call, caller, named, Action::GetNamespace,
                [&ep, call, caller, types](Resolved r) {
                    Request request{Action::GetNamespace, std::move(r.target),
                                    Manager::requestedTypes(types), 0};
                    ep.authorizeThen(
                        call, caller, request,
                        [&core = ep.core(), pidfd = r.pidfd, types](Call& c) {
                            Json namespaces = Json::object();
                            std::vector<UniqueFd> fds;
                            for (auto& [type, fd] : core.namespaceFds(pidfd(), types)) {
                                namespaces[std::string(toString(type))] = fds.size();
                                fds.emplace_back(fd.release());
                            }
                            c.reply({{"namespaces", std::move(namespaces)}}, std::move(fds));
                        });
                });
}

void getNamespaceIds(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    Named named = readNamed(call->parameters());
    resolveThen(ep.core(), call, caller, named, Action::ReadInfo, [&ep, call, caller](Resolved r) {
        Request request{Action::ReadInfo, std::move(r.target), {}, 0};
        ep.authorizeThen(call, caller, request, [&core = ep.core(), pidfd = r.pidfd](Call& c) {
            c.reply({{"ids", core.namespaceIds(pidfd())}});
        });
    });
}

void trackProcess(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    const Json& parameters = call->parameters();
    std::optional<std::uint32_t> pid = readPid(parameters);
    std::optional<std::uint64_t> index = readOptional(parameters, "pidfd", 0, kMaxInt32);
    std::optional<std::string> selector = readSelector(parameters);
    if (pid.has_value() + index.has_value() + selector.has_value() != 1) {
        throw ParameterError("pid", "Name the process by exactly one of pid, pidfd and selector");
    }
    Manager& core = ep.core();
    auto trackIt = [&ep, &core, call, caller](PidFd pidfd) {
        Request request{Action::Track, core.targetOf(caller, pidfd, Action::Track), {}, 0};
        auto held = std::make_shared<PidFd>(std::move(pidfd));
        ep.authorizeThen(call, caller, request, [&core, caller, held](Call& c) {
            TrackedProcess& process = core.track(caller, std::move(*held));
            c.reply({{"id", process.id()}, {"pid", core.pidFor(caller, process.pid())}});
        });
    };
    if (!selector) {
        trackIt(pid ? core.openPid(caller, *pid) : passedPidFd(core, *call, *index));
        return;
    }
    core.resolve(
        caller, *selector,
        [call, trackIt](PidFd pidfd) {
            try {
                trackIt(std::move(pidfd));
            } catch (...) {
                replyCurrentError(*call);
            }
        },
        [call](const ServiceError& e) { replyError(*call, e.kind(), e.what()); });
}

void untrackProcess(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    TrackedProcess& process = ep.core().tracked(caller, readId(call->parameters()));
    Request request{Action::Untrack, ep.core().targetOf(caller, process, Action::Untrack), {}, 0};
    ep.authorizeThen(call, caller, request,
                     [&core = ep.core(), caller, id = process.id()](Call& c) {
                         core.untrack(caller, id);
                         c.reply();
                     });
}

void getProcess(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    TrackedProcess& process = ep.core().trackedWithPid(caller, *readPid(call->parameters(), true));
    Request request{Action::ReadInfo, ep.core().targetOf(caller, process, Action::ReadInfo), {}, 0};
    ep.authorizeThen(call, caller, request, [id = process.id()](Call& c) {
        c.reply({{"id", id}});
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
    Named named = readNamed(call->parameters());
    Manager& core = ep.core();
    resolveThen(
        core, call, caller, named, Action::ReadInfo, [&ep, &core, call, caller, named](Resolved r) {
            Request request{Action::ReadInfo, std::move(r.target), {}, 0};
            ep.authorizeThen(
                call, caller, request, [&core, caller, named, pidfd = r.pidfd](Call& c) {
                    if (named.id) {
                        TrackedProcess& process = stillTracked(core, *named.id);
                        Info info = process.info();
                        c.reply({{"info",
                                  infoJson(info, process.id(), process.state(),
                                           process.exitStatus(), core.pidFor(caller, process.pid()),
                                           core.pidFor(caller, info.parentPid().value_or(0)))}});
                        return;
                    }
                    Info info = core.info(pidfd());
                    ProcessState state =
                        pidfd().hasExited() ? ProcessState::Exited : ProcessState::Running;
                    c.reply(
                        {{"info", infoJson(info, pidfd().id(), state, std::nullopt,
                                           core.pidFor(caller, pidfd().pid()),
                                           core.pidFor(caller, info.parentPid().value_or(0)))}});
                });
        });
}

void getPidFd(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    TrackedProcess& process = ep.core().tracked(caller, readId(call->parameters()));
    Request request{Action::GetPidFd, ep.core().targetOf(caller, process, Action::GetPidFd), {}, 0};
    ep.authorizeThen(call, caller, request,
                     [&core = ep.core(), pidfd = trackedPidFd(ep.core(), process.id())](Call& c) {
                         c.reply({{"fileDescriptor", 0}}, oneFd(core.duplicatePidFd(pidfd())));
                     });
}

void sendSignal(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    Named named = readNamed(call->parameters());
    auto signal = static_cast<int>(
        readRequired(call->parameters(), "signal", 0, static_cast<std::uint64_t>(SIGRTMAX)));
    resolveThen(ep.core(), call, caller, named, Action::SendSignal,
                [&ep, call, caller, signal](Resolved r) {
                    Request request{Action::SendSignal, std::move(r.target), {}, signal};
                    ep.authorizeThen(call, caller, request,
                                     [&core = ep.core(), pidfd = r.pidfd, signal](Call& c) {
                                         core.sendSignal(pidfd(), signal);
                                         c.reply();
                                     });
                });
}

void getFd(VarlinkEndpoint& ep, const CallPtr& call, const Caller& caller) {
    TrackedProcess& process = ep.core().tracked(caller, readId(call->parameters()));
    auto targetFd = static_cast<int>(readRequired(call->parameters(), "fd", 0, kMaxInt32));
    Request request{Action::GetFd, ep.core().targetOf(caller, process, Action::GetFd), {}, 0};
    ep.authorizeThen(
        call, caller, request,
        [&core = ep.core(), pidfd = trackedPidFd(ep.core(), process.id()), targetFd](Call& c) {
            c.reply({{"fileDescriptor", 0}}, oneFd(core.getFd(pidfd(), targetFd)));
        });
}

// socket(2)'s integer arguments as written: any int64, checked by the core.
std::int64_t readInteger(const Json& parameters, const std::string& name) {
    auto it = parameters.find(name);
    if (it == parameters.end() || it->is_null()) {
        throw ParameterError(name, "Missing parameter '" + name + "'");
    }
    if (!it->is_number_integer()) {
        throw ParameterError(name, "Invalid " + name + " " + it->dump() + " (expected an integer)");
    }
    if (it->is_number_unsigned() &&
        it->get<std::uint64_t>() >
            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw ParameterError(name, "Invalid " + name + " " + it->dump() + " (too large)");
    }
    return it->get<std::int64_t>();
}

SocketSpec readSocketSpec(const Json& parameters) {
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
    Named named = readNamed(call->parameters());
    SocketSpec spec = readSocketSpec(call->parameters());
    resolveThen(
        ep.core(), call, caller, named, Action::OpenSocket, [&ep, call, caller, spec](Resolved r) {
            Request request{Action::OpenSocket, std::move(r.target), {}, 0, spec};
            ep.authorizeThen(
                call, caller, request,
                [&core = ep.core(), caller, pidfd = r.pidfd, spec, held = call](Call&) {
                    core.openSocket(
                        caller, pidfd(), spec, [held](UniqueFd socket, std::exception_ptr error) {
                            try {
                                if (error) {
                                    std::rethrow_exception(error);
                                }
                                held->reply({{"fileDescriptor", 0}}, oneFd(std::move(socket)));
                            } catch (...) {
                                replyCurrentError(*held);
                            }
                        });
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
