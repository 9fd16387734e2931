// SPDX-License-Identifier: LGPL-2.1-or-later
// The load test's crowds beside crowd.hpp's bus connections (load_test.cpp):
// a user tracking short-lived processes, a user namespace's uids on Varlink,
// and a bare Varlink connection to check and time calls on.
#pragma once

#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "fixture.hpp"
#include "nsfd/contract.hpp"
#include "varlink/socket_io.hpp"

namespace nsfd::test {

// A Varlink connection to nsfdd, one call at a time (the wire as in
// contract/org.nsfd1.Manager.varlink; not libnsfd-client, whose own costs
// would be part of figure 11).
class VarlinkConnection {
  public:
    // Throws std::system_error if it cannot connect.
    explicit VarlinkConnection(const std::string& path)
        : socket_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        path.copy(address.sun_path, sizeof(address.sun_path) - 1);
        if (!socket_.ok() ||
            ::connect(socket_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
            throw std::system_error(errno, std::generic_category(), "connect to " + path);
        }
    }

    // Sends `method` with `parameters` and reads the reply to its NUL; the fds
    // that came with it go to `fds`. nullopt if nsfdd closed the connection
    // (as it does at once past its connection bounds). Throws WaitTimedOut
    // after kWaitLimit.
    std::optional<nlohmann::json> call(const std::string& method, const nlohmann::json& parameters,
                                       std::vector<UniqueFd>& fds) {
        std::string message = nlohmann::json{{"method", method}, {"parameters", parameters}}.dump();
        message.push_back('\0');
        if (::send(socket_.get(), message.data(), message.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(message.size())) {
            return std::nullopt;  // EPIPE, ECONNRESET: closed by nsfdd
        }
        std::string reply;
        auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
        while (reply.empty() || reply.back() != '\0') {
            pollfd pfd{socket_.get(), POLLIN, 0};
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) < 0) {
                throwWaitTimedOut("a Varlink reply to " + method);
            }
            char buffer[4096];
            varlink::Received received;
            int r = varlink::receiveWithFds(socket_.get(), buffer, received);
            if (r == -EAGAIN || r == -EINTR) {
                continue;
            }
            if (r < 0 || received.bytes == 0) {
                return std::nullopt;
            }
            reply.append(buffer, received.bytes);
            for (UniqueFd& fd : received.fds) {
                fds.push_back(std::move(fd));
            }
        }
        reply.pop_back();
        return nlohmann::json::parse(reply);
    }

  private:
    UniqueFd socket_;
};

// "" if `fd` is the namespace at `path`, else what it is instead.
inline std::string sameNamespace(int fd, const std::string& path) {
    struct stat got = statOf(fd), expected = statOf(path);
    if (got.st_dev == expected.st_dev && got.st_ino == expected.st_ino) {
        return "";
    }
    return "inode " + std::to_string(got.st_ino) + ", not " + std::to_string(expected.st_ino) +
           " of " + path;
}

// GetNamespace(pid, type) over Varlink, its fd checked; "" or what was wrong.
inline std::string varlinkGetNamespace(VarlinkConnection& connection, pid_t pid, const char* type) {
    std::vector<UniqueFd> fds;
    auto reply = connection.call(std::string(varlink::kInterface) + ".GetNamespace",
                                 {{"pid", pid}, {"type", type}}, fds);
    if (!reply) {
        return "connection closed by nsfdd";
    }
    if (reply->contains("error")) {
        return reply->dump();
    }
    const auto& parameters = (*reply)["parameters"];
    if (fds.size() != 1 || !parameters.contains("fileDescriptor") ||
        parameters["fileDescriptor"] != 0) {
        return std::to_string(fds.size()) + " fds with " + reply->dump();
    }
    return sameNamespace(fds[0].get(), nsPath(pid, type));
}

// A child as `uid` that forks `count` short-lived processes and tracks each
// (TrackProcess, `inFlight` calls at once) before reaping it; its report is
// "tracked refused firstOtherError". Bounded by `limit`.
inline std::string trackShortLived(uid_t uid, int count, int inFlight, std::chrono::seconds limit) {
    int report[2];
    if (::pipe2(report, O_CLOEXEC) < 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    UniqueFd readEnd(report[0]), writeEnd(report[1]);
    pid_t child = forkProcess();
    if (child == 0) {
        readEnd.reset();
        std::string line = "-1 -1 setuid";
        if (::setgroups(0, nullptr) == 0 && ::setresgid(uid, uid, uid) == 0 &&
            ::setresuid(uid, uid, uid) == 0) {
            try {
                auto bus = connectToBus();
                auto proxy =
                    sdbus::createProxy(*bus, nsfd::dbus::kBusName, nsfd::dbus::kManagerPath);
                int tracked = 0, refused = 0, pending = 0;
                std::string other = "-";
                for (int done = 0; done < count;) {
                    std::vector<pid_t> batch;
                    for (int i = 0; i < inFlight && done < count; ++i, ++done) {
                        pid_t pid = ::fork();
                        if (pid == 0) {
                            ::_exit(0);
                        }
                        batch.push_back(pid);
                    }
                    // A zombie until reaped below: tracked while it is one.
                    for (pid_t pid : batch) {
                        auto call =
                            proxy->createMethodCall(nsfd::dbus::kManagerInterface, "TrackProcess");
                        call << static_cast<uint32_t>(pid);
                        ++pending;
                        (void)proxy->callMethod(
                            call,
                            [&](sdbus::MethodReply&, const sdbus::Error* error) {
                                --pending;
                                if (error == nullptr) {
                                    ++tracked;
                                } else if (error->getName() == err::kLimitExceeded) {
                                    ++refused;
                                } else if (other == "-") {
                                    other = error->getName();
                                }
                            },
                            std::chrono::minutes(2));
                    }
                    while (pending > 0) {
                        while (bus->processPendingRequest()) {
                        }
                        if (pending > 0) {
                            pollfd pfd{bus->getEventLoopPollData().fd, POLLIN, 0};
                            ::poll(&pfd, 1, 100);
                        }
                    }
                    for (pid_t pid : batch) {
                        ::waitpid(pid, nullptr, 0);
                    }
                }
                line = std::to_string(tracked) + " " + std::to_string(refused) + " " + other;
            } catch (const std::exception& e) {
                line = "-1 -1 exception:" + std::string(e.what());
            }
        }
        (void)!::write(writeEnd.get(), line.data(), line.size());
        ::_exit(0);
    }
    writeEnd.reset();
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        pollfd pfd{readEnd.get(), POLLIN, 0};
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) != 1) {
            ::kill(child, SIGKILL);
            reapWithin(child, "the tracker of short-lived processes to die");
            throwWaitTimedOut("the tracker of short-lived processes", limit);
        }
        char buffer[256];
        ssize_t n = ::read(readEnd.get(), buffer, sizeof(buffer));
        if (n <= 0) {
            break;
        }
        out.append(buffer, static_cast<std::size_t>(n));
    }
    reapWithin(child, "the tracker of short-lived processes to exit");
    return out;
}

// A rootless container of `owner`'s on Varlink: a user namespace whose uids
// 0..uids are firstSubordinate.. outside; each of its uids 1..uids opens
// `connectionsEach` connections to nsfdd and calls GetInfo on each, and keeps
// those nsfdd answered open until release(). They all count as `owner`'s
// (VarlinkLimitsTest.TheUidsOfAUserNamespaceCountAsItsOwner).
class NamespaceCrowd {
  public:
    NamespaceCrowd(uid_t owner, uid_t firstSubordinate, int uids, int connectionsEach,
                   const std::string& socket)
        : uids_(uids) {
        int report[2], mapped[2];
        if (::pipe2(report, O_CLOEXEC) < 0 || ::pipe2(mapped, O_CLOEXEC) < 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        report_ = UniqueFd(report[0]);
        UniqueFd reportWrite(report[1]), mappedRead(mapped[0]), mappedWrite(mapped[1]);
        pid_ = forkProcess();
        if (pid_ == 0) {
            report_.reset();
            mappedWrite.reset();
            // Released by SIGTERM, not by a pipe's end: every child forked
            // after this one (the next crowd) inherits the parent's end.
            sigset_t term;
            sigemptyset(&term);
            sigaddset(&term, SIGTERM);
            char byte = 0;
            if (::setgroups(0, nullptr) < 0 || ::setresgid(owner, owner, owner) < 0 ||
                ::setresuid(owner, owner, owner) < 0 || ::unshare(CLONE_NEWUSER) < 0 ||
                ::sigprocmask(SIG_BLOCK, &term, nullptr) < 0 ||
                ::write(reportWrite.get(), "u", 1) != 1 ||
                ::read(mappedRead.get(), &byte, 1) != 1) {
                ::_exit(1);
            }
            std::vector<pid_t> workers;
            for (int i = 1; i <= uids; ++i) {
                pid_t worker = ::fork();
                if (worker == 0) {
                    work(static_cast<uid_t>(i), connectionsEach, socket, reportWrite.get());
                }
                workers.push_back(worker);
            }
            int signal = 0;
            (void)::sigwait(&term, &signal);  // release()
            for (pid_t worker : workers) {
                ::kill(worker, SIGKILL);
                ::waitpid(worker, nullptr, 0);
            }
            ::_exit(0);
        }
        reportWrite.reset();
        mappedRead.reset();
        char byte = 0;
        if (!readWithin(&byte, 1)) {
            throwWaitTimedOut("a user namespace of uid " + std::to_string(owner));
        }
        std::string map =
            "0 " + std::to_string(firstSubordinate) + " " + std::to_string(uids + 1) + "\n";
        for (const char* file : {"uid_map", "gid_map"}) {
            std::string path = "/proc/" + std::to_string(pid_) + "/" + file;
            UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
            if (!fd.ok() ||
                ::write(fd.get(), map.data(), map.size()) != static_cast<ssize_t>(map.size())) {
                throw std::system_error(errno, std::generic_category(), "write " + path);
            }
        }
        if (::write(mappedWrite.get(), "m", 1) != 1) {
            throw std::system_error(errno, std::generic_category(), "write to the namespace");
        }
    }
    NamespaceCrowd(const NamespaceCrowd&) = delete;
    NamespaceCrowd& operator=(const NamespaceCrowd&) = delete;
    ~NamespaceCrowd() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);  // it kills and reaps its uids' processes
            if (!awaitChildExit(pid_)) {
                ::kill(pid_, SIGKILL);
            }
            ::waitpid(pid_, nullptr, 0);
        }
    }

    // Waits for every uid's report: how many connections nsfdd answered (the
    // others it closed); -1 if a uid could not connect or call at all.
    int awaitAnswered() {
        std::string text;
        while (std::count(text.begin(), text.end(), '\n') < uids_) {
            char buffer[256];
            ssize_t n = readWithin(buffer, sizeof(buffer));
            if (n <= 0) {
                throwWaitTimedOut("the uids of a user namespace to connect");
            }
            text.append(buffer, static_cast<std::size_t>(n));
        }
        std::istringstream in(text);
        int total = 0;
        for (int one = 0; in >> one;) {
            if (one < 0) {
                return -1;
            }
            total += one;
        }
        return total;
    }

    // Closes every connection and reaps the namespace's processes.
    void release() {
        ::kill(pid_, SIGTERM);
        reapWithin(pid_, "a user namespace's Varlink connections to close");
        pid_ = -1;
    }

  private:
    [[noreturn]] static void work(uid_t uid, int connections, const std::string& socket,
                                  int report) {
        int answered = -1;
        if (::setresgid(uid, uid, uid) == 0 && ::setresuid(uid, uid, uid) == 0) {
            answered = 0;
            std::vector<std::unique_ptr<VarlinkConnection>> open;
            for (int c = 0; c < connections; ++c) {
                try {
                    auto connection = std::make_unique<VarlinkConnection>(socket);
                    std::vector<UniqueFd> fds;
                    auto reply = connection->call("org.varlink.service.GetInfo", {}, fds);
                    if (reply && !reply->contains("error")) {
                        ++answered;
                        open.push_back(std::move(connection));
                    }
                } catch (const std::exception&) {
                    answered = -1;
                    break;
                }
            }
            std::string line = std::to_string(answered) + "\n";
            (void)!::write(report, line.data(), line.size());
            for (;;) {
                ::pause();  // until killed, holding its connections
            }
        }
        (void)!::write(report, "-1\n", 3);
        ::_exit(1);
    }

    ssize_t readWithin(void* buffer, std::size_t size) {
        pollfd pfd{report_.get(), POLLIN, 0};
        if (::poll(&pfd, 1, static_cast<int>(kWaitLimit.count() * 1000)) != 1) {
            return -1;
        }
        return ::read(report_.get(), buffer, size);
    }

    int uids_;
    pid_t pid_ = -1;
    UniqueFd report_;
};

}  // namespace nsfd::test
