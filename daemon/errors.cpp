// SPDX-License-Identifier: LGPL-2.1-or-later
#include "errors.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <system_error>

#include "nsfd/dbus_names.hpp"

namespace nsfd::daemon {

const char* dbusErrorName(ErrorKind kind) noexcept {
    namespace e = nsfd::dbus::error;
    switch (kind) {
        case ErrorKind::NoSuchProcess:
            return e::kNoSuchProcess;
        case ErrorKind::ProcessExited:
            return e::kProcessExited;
        case ErrorKind::NotTracked:
            return e::kNotTracked;
        case ErrorKind::NotSupported:
            return e::kNotSupported;
        case ErrorKind::LimitExceeded:
            return e::kLimitExceeded;
        case ErrorKind::AccessDenied:
            return e::kAccessDenied;
        case ErrorKind::InvalidArgs:
            return e::kInvalidArgs;
        case ErrorKind::Failed:
            break;
    }
    return e::kFailed;
}

ErrorKind kindOfErrno(int err) noexcept {
    switch (err) {
        case ESRCH:
            return ErrorKind::ProcessExited;
        case EACCES:
        case EPERM:
            return ErrorKind::AccessDenied;
        case EOPNOTSUPP:
            return ErrorKind::NotSupported;
        case EINVAL:
        case ENOENT:
        case EBADF:
            return ErrorKind::InvalidArgs;
        case EMFILE:
        case ENFILE:
        case ENOMEM:
            return ErrorKind::LimitExceeded;
        default:
            return ErrorKind::Failed;
    }
}

int setBusErrorFromException(sd_bus_error* error) noexcept {
    auto set = [error](ErrorKind kind, const char* message) {
        int r = sd_bus_error_set(error, dbusErrorName(kind), message);
        return r < 0 ? r : -EIO;
    };
    try {
        throw;
    } catch (const ServiceError& e) {
        return set(e.kind(), e.what());
    } catch (const std::system_error& e) {
        int err = e.code().category() == std::generic_category() ? e.code().value() : 0;
        return set(kindOfErrno(err), e.what());
    } catch (const std::bad_alloc&) {
        return set(ErrorKind::LimitExceeded, "Out of memory");
    } catch (const std::exception& e) {
        spdlog::error("Unexpected failure in a method call: {}", e.what());
        return set(ErrorKind::Failed, e.what());
    } catch (...) {
        return set(ErrorKind::Failed, "Unknown failure");
    }
}

}  // namespace nsfd::daemon
