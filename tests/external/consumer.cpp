// SPDX-License-Identifier: LGPL-2.1-or-later
// A program outside the project: only the installed <nsfd/client.hpp> and nsfd::client.
// It starts a child in a fresh net namespace, tracks it, receives that namespace,
// and reports the child's exit status as nsfdd saw it.
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <nsfd/client.hpp>

int main() {
    int go[2];
    if (pipe(go) < 0) {
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        close(go[1]);
        if (unshare(CLONE_NEWNET) < 0) {
            _exit(1);
        }
        char byte;
        (void)!read(go[0], &byte, 1);
        _exit(5);
    }
    close(go[0]);
    try {
        nsfd::Client client = nsfd::Client::system();
        usleep(100000);  // let the child unshare
        nsfd::TrackedProcess process = client.track(child);
        nsfd::NsFd net = process.namespaceFd(nsfd::NsType::Net);
        struct stat expected {};
        stat(("/proc/" + std::to_string(child) + "/ns/net").c_str(), &expected);
        int status = -1;
        process.onExit([&](int s) {
            status = s;
            client.stopEventLoop();
        });
        close(go[1]);
        waitpid(child, nullptr, 0);
        client.runEventLoop(std::chrono::seconds(10));
        std::cout << (net.inode() == expected.st_ino ? "net ok" : "net wrong") << " exit " << status
                  << '\n';
        return 0;
    } catch (const nsfd::Error& e) {
        std::cerr << e.dbusName() << ": " << e.what() << '\n';
        return 1;
    }
}
