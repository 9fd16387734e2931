// SPDX-License-Identifier: LGPL-2.1-or-later
// nsfdd: hands out the namespace fds of processes over D-Bus. See nsfdd(8).
#include <signal.h>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "core/config.hpp"
#include "logging.hpp"
#include "serve.hpp"
#include "version.hpp"

int main(int argc, char** argv) {
    CLI::App app{"nsfdd: namespace fds of processes, by pidfd, over D-Bus and Varlink"};
    std::string configPath = nsfd::daemon::kDefaultConfigPath;
    std::string bus = "system";
    std::string varlink;
    std::string logLevel = "info";
    bool checkConfig = false;
    auto* configOption =
        app.add_option("--config", configPath, "Configuration file (nsfdd.conf(5))");
    app.add_option("--bus", bus, "system, session, or a D-Bus address (default: system)");
    app.add_option("--varlink", varlink,
                   "Serve Varlink on a socket bound at this path (default: only on the socket "
                   "systemd passes, nsfdd.socket)");
    app.add_option("--log-level", logLevel,
                   "trace, debug, info, warn, error, critical or off (default: info)");
    app.add_flag("--check-config", checkConfig, "Check the configuration and exit");
    app.set_version_flag("--version", nsfd::daemon::kVersion);
    CLI11_PARSE(app, argc, argv);

    try {
        nsfd::daemon::setUpLogging(logLevel);
    } catch (const std::exception& e) {
        std::cerr << "nsfdd: " << e.what() << '\n';
        return 2;
    }

    nsfd::daemon::Config config;
    try {
        config = nsfd::daemon::loadConfig(configPath, configOption->count() > 0);
    } catch (const nsfd::daemon::ConfigError& e) {
        spdlog::critical("Bad configuration: {}", e.what());
        return 1;
    }
    if (checkConfig) {
        std::cout << (config.source.empty() ? "built-in defaults" : config.source) << ": ok\n";
        return 0;
    }

    // sd-event takes these as events; block them before any thread starts.
    sigset_t stopSignals;
    sigemptyset(&stopSignals);
    sigaddset(&stopSignals, SIGTERM);
    sigaddset(&stopSignals, SIGINT);
    sigprocmask(SIG_BLOCK, &stopSignals, nullptr);
    (void)signal(SIGPIPE, SIG_IGN);

    try {
        return nsfd::daemon::serve(bus, varlink, config);
    } catch (const std::exception& e) {
        spdlog::critical("Failed to start: {}", e.what());
    }
    return 1;
}
