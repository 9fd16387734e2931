// SPDX-License-Identifier: LGPL-2.1-or-later
#include "errors.hpp"

#include <sdbus-c++/Error.h>
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

void rethrowAsDbusError() {
    try {
        throw;
    } catch (const sdbus::Error&) {
        throw;
    } catch (const ServiceError& e) {
        throw sdbus::Error(dbusErrorName(e.kind()), e.what());
    } catch (const std::system_error& e) {
        int err = e.code().category() == std::generic_category() ? e.code().value() : 0;
        throw sdbus::Error(dbusErrorName(kindOfErrno(err)), e.what());
    } catch (const std::bad_alloc&) {
        throw sdbus::Error(dbusErrorName(ErrorKind::LimitExceeded), "Out of memory");
    } catch (const std::exception& e) {
        spdlog::error("Unexpected failure in a method call: {}", e.what());
        throw sdbus::Error(dbusErrorName(ErrorKind::Failed), e.what());
    }
}

}  // namespace nsfd::daemon
