/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* nsfd-call: the two calls tests/system/run cannot make with busctl (252), on the
 * system bus, printing the D-Bus error name and message nsfdd answers (busctl
 * prints only a generic text for a well-known error name):
 *   nsfd-call track-by-pidfd PID   TrackProcessByPidFd with a pidfd of PID; prints the path
 *   nsfd-call get-fd PATH FD       org.nsfd1.Process.GetFd; prints "fd received"
 * Built on the host by tests/system/run, run in the container (libsystemd0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

int main(int argc, char** argv) {
    sd_bus* bus = NULL;
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message* reply = NULL;
    int pidfd = -1;
    int r = sd_bus_open_system(&bus);
    if (r >= 0 && argc == 3 && strcmp(argv[1], "track-by-pidfd") == 0) {
        pidfd = (int)syscall(SYS_pidfd_open, atoi(argv[2]), 0);
        if (pidfd < 0) {
            perror("pidfd_open");
            return 1;
        }
        r = sd_bus_call_method(bus, "org.nsfd1", "/org/nsfd1", "org.nsfd1.Manager",
                               "TrackProcessByPidFd", &error, &reply, "h", pidfd);
        const char* path = NULL;
        if (r >= 0 && (r = sd_bus_message_read(reply, "o", &path)) >= 0) {
            printf("%s\n", path);
        }
    } else if (r >= 0 && argc == 4 && strcmp(argv[1], "get-fd") == 0) {
        r = sd_bus_call_method(bus, "org.nsfd1", argv[2], "org.nsfd1.Process", "GetFd", &error,
                               &reply, "i", atoi(argv[3]));
        int fd = -1;
        if (r >= 0 && (r = sd_bus_message_read(reply, "h", &fd)) >= 0) {
            printf("fd received\n");
        }
    } else if (r >= 0) {
        fprintf(stderr, "usage: nsfd-call track-by-pidfd PID | get-fd PATH FD\n");
        return 2;
    }
    if (r < 0) {
        if (sd_bus_error_is_set(&error)) {
            fprintf(stderr, "%s: %s\n", error.name, error.message);
        } else {
            fprintf(stderr, "%s\n", strerror(-r));
        }
    }
    sd_bus_error_free(&error);
    sd_bus_message_unref(reply);
    sd_bus_unref(bus);
    if (pidfd >= 0) {
        close(pidfd);
    }
    return r < 0 ? 1 : 0;
}
