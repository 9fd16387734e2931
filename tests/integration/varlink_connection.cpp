// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink_connection.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include "child.hpp"
#include "harness.hpp"
#include "varlink/socket_io.hpp"

namespace nsfd::test {

namespace {

// Milliseconds left until `deadline`, at least 0.
int millisecondsUntil(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

}  // namespace

VarlinkConnection::VarlinkConnection(const std::string& path)
    : path_(path), fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    if (!fd_.ok() || ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
        throw std::system_error(errno, std::generic_category(), "connect to " + path);
    }
}

bool VarlinkConnection::send(const std::string& method, const nlohmann::json& parameters,
                             const std::vector<int>& fds, bool more) {
    nlohmann::json call = {{"method", method}, {"parameters", parameters}};
    if (more) {
        call["more"] = true;
    }
    std::string bytes = call.dump();
    bytes.push_back('\0');
    return sendAllWithFds(fd_.get(), bytes, fds);
}

std::optional<VarlinkConnection::Reply> VarlinkConnection::next(std::chrono::milliseconds timeout) {
    std::vector<UniqueFd> fds;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (std::size_t end = buffer_.find('\0'); end != std::string::npos) {
            nlohmann::json reply = nlohmann::json::parse(buffer_.substr(0, end));
            buffer_.erase(0, end + 1);
            return Reply{std::move(reply), std::move(fds)};
        }
        struct pollfd pfd = {fd_.get(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, millisecondsUntil(deadline));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            throwWaitTimedOut("a Varlink reply on " + path_, timeout);
        }
        char chunk[65536];
        varlink::Received received;
        int r = varlink::receiveWithFds(fd_.get(), chunk, received);
        if (r == -EAGAIN || r == -EINTR) {
            continue;
        }
        if (r < 0 || received.bytes == 0) {
            return std::nullopt;
        }
        buffer_.append(chunk, received.bytes);
        for (UniqueFd& fd : received.fds) {
            fds.push_back(std::move(fd));
        }
    }
}

VarlinkConnection::Reply VarlinkConnection::receive(std::chrono::milliseconds timeout) {
    std::optional<Reply> reply = next(timeout);
    if (!reply) {
        throw std::runtime_error("nsfdd hung up on " + path_);
    }
    return std::move(*reply);
}

VarlinkConnection::Reply VarlinkConnection::call(const std::string& method,
                                                 const nlohmann::json& parameters,
                                                 std::chrono::milliseconds timeout) {
    if (!send(method, parameters)) {
        throw std::runtime_error("nsfdd hung up before " + method + " was sent");
    }
    return receive(timeout);
}

std::string errorOf(const nlohmann::json& reply) {
    if (!reply.contains("error")) {
        return "";
    }
    std::string name = reply["error"];
    return name.substr(name.rfind('.') + 1);
}

std::optional<std::string> LineReader::readLine(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (std::size_t end = buffer_.find('\n'); end != std::string::npos) {
            std::string line = buffer_.substr(0, end);
            buffer_.erase(0, end + 1);
            return line;
        }
        struct pollfd pfd = {fd_.get(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, millisecondsUntil(deadline));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            return std::nullopt;
        }
        char chunk[4096];
        ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
        if (n <= 0) {
            return std::nullopt;
        }
        buffer_.append(chunk, static_cast<std::size_t>(n));
    }
}

std::vector<pid_t> childrenOf(pid_t pid) {
    std::vector<pid_t> out;
    std::error_code error;
    std::filesystem::directory_iterator tasks("/proc/" + std::to_string(pid) + "/task", error);
    for (; !error && tasks != std::filesystem::directory_iterator(); tasks.increment(error)) {
        std::ifstream in(tasks->path() / "children");
        for (pid_t child = 0; in >> child;) {
            out.push_back(child);
        }
    }
    return out;
}

}  // namespace nsfd::test
