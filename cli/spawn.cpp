// SPDX-License-Identifier: LGPL-2.1-or-later
#include "spawn.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <system_error>

#include "enter.hpp"
#include "nsfd/dbus_names.hpp"

extern char** environ;

namespace nsfd::cli {

namespace {

// The signals nsfdctl passes on; written to a pipe by the handler, sent on
// from the loop once the command's pidfd is there.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
int signalPipe = -1;

void onSignal(int signal) {
    int saved = errno;
    unsigned char byte = static_cast<unsigned char>(signal);
    (void)!::write(signalPipe, &byte, 1);
    errno = saved;
}

// The handlers of kForwarded while the command runs; the ones before put back
// (and the pipe forgotten) when it ends, on every path.
class ForwardedSignals {
  public:
    explicit ForwardedSignals(int pipe) {
        signalPipe = pipe;
        struct sigaction action {};
        action.sa_handler = onSignal;
        ::sigemptyset(&action.sa_mask);
        for (std::size_t i = 0; i < std::size(kForwarded); ++i) {
            ::sigaction(kForwarded[i], &action, &before_[i]);
        }
    }
    ~ForwardedSignals() {
        for (std::size_t i = 0; i < std::size(kForwarded); ++i) {
            ::sigaction(kForwarded[i], &before_[i], nullptr);
        }
        signalPipe = -1;
    }
    ForwardedSignals(const ForwardedSignals&) = delete;
    ForwardedSignals& operator=(const ForwardedSignals&) = delete;

  private:
    struct sigaction before_[std::size(kForwarded)]{};
};

[[noreturn]] void refuse(const std::string& message) {
    throw InvalidArgument(std::string(dbusErrorName(ErrorKind::InvalidArgs)), message);
}

int exitCodeOf(int status) {
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

}  // namespace

bool isBrokerable(NsType type) noexcept {
    return type == NsType::Net || type == NsType::Uts || type == NsType::Ipc;
}

bool canEnterItself(const std::vector<NsType>& types) noexcept {
    if (std::find(types.begin(), types.end(), NsType::User) != types.end()) {
        return true;  // the user namespace gives the rights for the rest, or nothing does
    }
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) < 0) {
        return false;
    }
    return (data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective & CAP_TO_MASK(CAP_SYS_ADMIN)) != 0;
}

int runBrokered(Client& client, pid_t pid, const std::vector<NsType>& types,
                const ExecArguments& args) {
    std::string refused;
    for (NsType type : types) {
        if (!isBrokerable(type)) {
            refused += (refused.empty() ? "" : ", ") + std::string(toString(type));
        }
    }
    if (!refused.empty()) {
        throw AccessDenied(
            std::string(dbusErrorName(ErrorKind::AccessDenied)),
            "Cannot enter the " + refused + " namespace of pid " + std::to_string(pid) +
                ": without CAP_SYS_ADMIN, nsfdctl exec runs the command through nsfdd as you, "
                "which enters only the net, uts and ipc namespaces; the command keeps your own "
                "mount, pid, user, cgroup and time namespaces, since entering those would "
                "change who you are or what your files are (root, or --user for a user "
                "namespace you own, enters every type)");
    }
    if ((args.uid.given && (args.uid.follow || args.uid.value != ::geteuid())) ||
        (args.gid.given && (args.gid.follow || args.gid.value != ::getegid()))) {
        refuse("-S/-G: a command nsfdd runs for you runs as you (uid " +
               std::to_string(::geteuid()) + ", gid " + std::to_string(::getegid()) +
               "), never as another user");
    }
    if (args.root.given) {
        refuse("-r: a command nsfdd runs for you keeps your root directory");
    }
    SpawnOptions options;
    options.namespaces = types;
    options.argv = args.command;
    std::optional<TargetFiles> target;
    if (args.env || (args.wd.given && args.wd.path.empty())) {
        target.emplace(PidFd::open(pid));
    }
    if (args.env) {
        options.environment = target->environment();
    } else {
        for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
            options.environment.emplace_back(*e);
        }
    }
    UniqueFd directory;
    if (args.wd.given) {
        directory = args.wd.path.empty() ? target->workingDirectory() : openDirectory(args.wd.path);
        options.workingDirectory = directory.get();
    }

    int pipe[2];
    if (::pipe2(pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        throw std::system_error(errno, std::generic_category(), "Failed to make a pipe");
    }
    UniqueFd signalsIn(pipe[0]), signalsOut(pipe[1]);

    // Forwarded from before the call: a signal that comes while nsfdd starts
    // the command (a Ctrl-C at a polkit prompt included) reaches it as soon as
    // it runs, so it never runs on past a signal meant for it.
    ForwardedSignals forwarding(signalsOut.get());
    SpawnedCommand command = client.spawn(pid, options);
    for (;;) {
        if (std::optional<int> status = command.poll()) {
            return exitCodeOf(*status);
        }
        pollfd fds[2] = {{command.eventFd(), POLLIN, 0}, {signalsIn.get(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0 && errno != EINTR) {
            throw std::system_error(errno, std::generic_category(), "Failed to poll");
        }
        unsigned char signal = 0;
        while (::read(signalsIn.get(), &signal, 1) == 1) {
            try {
                command.pidFd().sendSignal(signal);  // as this user: the kernel decides
            } catch (const std::system_error&) {
                // It has exited meanwhile: its status is on its way.
            }
        }
    }
}

}  // namespace nsfd::cli
