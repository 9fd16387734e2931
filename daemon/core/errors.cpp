// SPDX-License-Identifier: LGPL-2.1-or-later
#include "errors.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <system_error>

namespace nsfd::daemon {

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

std::pair<ErrorKind, std::string> currentError() noexcept {
    try {
        throw;
    } catch (const ServiceError& e) {
        return {e.kind(), e.what()};
    } catch (const std::system_error& e) {
        int err = e.code().category() == std::generic_category() ? e.code().value() : 0;
        return {kindOfErrno(err), e.what()};
    } catch (const std::bad_alloc&) {
        return {ErrorKind::LimitExceeded, "Out of memory"};
    } catch (const std::exception& e) {
        spdlog::error("Unexpected failure in a call: {}", e.what());
        return {ErrorKind::Failed, e.what()};
    } catch (...) {
        return {ErrorKind::Failed, "Unknown failure"};
    }
}

}  // namespace nsfd::daemon
