// SPDX-License-Identifier: LGPL-2.1-or-later
// The daemon's error kinds, and the one place that turns any exception into a D-Bus error.
#pragma once

#include <systemd/sd-bus.h>

#include <stdexcept>
#include <string>

namespace nsfd::daemon {

enum class ErrorKind {
    NoSuchProcess,
    ProcessExited,
    NotTracked,
    NotSupported,
    LimitExceeded,
    AccessDenied,
    InvalidArgs,
    Failed,
};

// An error a client should see by name. The message names the bad value.
class ServiceError : public std::runtime_error {
  public:
    ServiceError(ErrorKind kind, const std::string& message)
        : std::runtime_error(message), kind_(kind) {}
    ErrorKind kind() const noexcept { return kind_; }

  private:
    ErrorKind kind_;
};

// The D-Bus error name of a kind.
const char* dbusErrorName(ErrorKind kind) noexcept;

// The kind of an errno from libnsfd when it was reported on a process that
// was, when the call began, alive (so ESRCH means it has exited since).
ErrorKind kindOfErrno(int err) noexcept;

// Sets `error` from the exception in flight: ServiceError by kind,
// std::system_error by errno, anything else as org.nsfd1.Error.Failed.
// Returns the negative errno a vtable handler returns with it. Call it only
// from a catch block.
int setBusErrorFromException(sd_bus_error* error) noexcept;

}  // namespace nsfd::daemon
