// SPDX-License-Identifier: LGPL-2.1-or-later
// The core's errors: a kind every endpoint names the same way (nsfd/contract.hpp)
// and a message that names the bad value and what was attempted.
#pragma once

#include <stdexcept>
#include <string>

#include "nsfd/contract.hpp"

namespace nsfd::daemon {

// An error a client should see by name.
class ServiceError : public std::runtime_error {
  public:
    ServiceError(ErrorKind kind, const std::string& message)
        : std::runtime_error(message), kind_(kind) {}
    ErrorKind kind() const noexcept { return kind_; }

  private:
    ErrorKind kind_;
};

// SocketFailed: socket(2) failed, as the caller, in the target's network
// namespace; `error` is its errno (Varlink's SocketFailed carries it).
class SocketError : public ServiceError {
  public:
    SocketError(int error, const std::string& message)
        : ServiceError(ErrorKind::SocketFailed, message), error_(error) {}
    int error() const noexcept { return error_; }

  private:
    int error_;
};

// The kind of an errno from libnsfd when it was reported on a process that
// was, when the call began, alive (so ESRCH means it has exited since).
ErrorKind kindOfErrno(int err) noexcept;

// The kind and message of the exception in flight: ServiceError by kind,
// std::system_error by errno, anything else as Failed (logged: a bug).
// Call it only from a catch block.
std::pair<ErrorKind, std::string> currentError() noexcept;

}  // namespace nsfd::daemon
