// SPDX-License-Identifier: LGPL-2.1-or-later
#include "logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <stdexcept>

namespace nsfd::daemon {

void setUpLogging(const std::string& level) {
    spdlog::level::level_enum parsed = spdlog::level::from_str(level);
    if (parsed == spdlog::level::off && level != "off") {
        throw std::invalid_argument("unknown log level '" + level +
                                    "' (trace, debug, info, warn, error, critical, off)");
    }
    std::shared_ptr<spdlog::logger> logger;
    if (std::getenv("JOURNAL_STREAM") != nullptr) {
        logger = std::make_shared<spdlog::logger>(
            "nsfdd", std::make_shared<spdlog::sinks::systemd_sink_st>("nsfdd"));
        logger->set_pattern("%v");
    } else {
        logger = std::make_shared<spdlog::logger>(
            "nsfdd", std::make_shared<spdlog::sinks::stderr_sink_st>());
        logger->set_pattern("nsfdd[%P]: %l: %v");
    }
    logger->set_level(parsed);
    spdlog::set_default_logger(logger);
}

}  // namespace nsfd::daemon
