/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* nsfd-call: the two calls tests/system/run cannot make with busctl (252), on the
 * system bus, printing the D-Bus error name and message nsfdd answers (busctl
 * prints only a generic text for a well-known error name):
 *   nsfd-call track-by-pidfd PID   TrackProcessByPidFd with a pidfd of PID; prints the path
 *   nsfd-call get-fd PATH FD       org.nsfd1.Process.GetFd; prints "fd received"
 * and one call on nsfdd's Varlink socket (no bus), which Debian 12 has no client for:
 *   nsfd-call varlink METHOD JSON  prints "fd: TARGET" for each fd received, then the
 *                                  reply; exits 1 on an error reply
 * and a target for OpenSocket, a service only reachable from inside its own network namespace:
 *   nsfd-call serve-in-netns PORT  unshares a network namespace, brings its loopback up,
 *                                  listens on 127.0.0.1:PORT there and answers each
 *                                  connection with "hello from inside", forever
 * Built on the host by tests/system/run, run in the container (libsystemd0). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

static void print_fds(struct msghdr* msg) {
    for (struct cmsghdr* c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd = -1;
            char path[64], target[256] = "";
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
            ssize_t length = readlink(path, target, sizeof(target) - 1);
            target[length > 0 ? length : 0] = '\0';
            printf("fd: %s\n", target);
            close(fd);
        }
    }
}

static int varlink_call(const char* method, const char* parameters) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX, .sun_path = "/run/nsfd/org.nsfd1.Manager"};
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr*)&addr, sizeof(addr)) < 0) {
        perror("connect to /run/nsfd/org.nsfd1.Manager");
        return 1;
    }
    char request[4096];
    int n = snprintf(request, sizeof(request), "{\"method\":\"%s\",\"parameters\":%s}", method,
                     parameters);
    if (n < 0 || n >= (int)sizeof(request) || write(s, request, (size_t)n + 1) != n + 1) {
        perror("write");
        return 1;
    }
    static char reply[65536];
    size_t got = 0;
    while (memchr(reply, 0, got) == NULL && got < sizeof(reply) - 1) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * 16)];
        } control;
        struct iovec iov = {reply + got, sizeof(reply) - 1 - got};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf)};
        ssize_t r = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
        if (r <= 0) {
            fprintf(stderr, "nsfdd hung up without a reply\n");
            return 1;
        }
        print_fds(&msg);
        got += (size_t)r;
    }
    reply[got] = '\0';
    printf("%s\n", reply);
    close(s);
    return strstr(reply, "\"error\"") != NULL ? 1 : 0;
}

static int serve_in_netns(int port) {
    if (unshare(CLONE_NEWNET) < 0) {
        perror("unshare(CLONE_NEWNET)");
        return 1;
    }
    struct ifreq lo;
    memset(&lo, 0, sizeof(lo));
    strcpy(lo.ifr_name, "lo");
    int control = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (control < 0 || ioctl(control, SIOCGIFFLAGS, &lo) < 0) {
        perror("SIOCGIFFLAGS lo");
        return 1;
    }
    lo.ifr_flags |= IFF_UP;
    if (ioctl(control, SIOCSIFFLAGS, &lo) < 0) {
        perror("SIOCSIFFLAGS lo");
        return 1;
    }
    close(control);
    int listening = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (listening < 0 || bind(listening, (struct sockaddr*)&address, sizeof(address)) < 0 ||
        listen(listening, 16) < 0) {
        perror("listen on 127.0.0.1");
        return 1;
    }
    for (;;) {
        int connection = accept4(listening, NULL, NULL, SOCK_CLOEXEC);
        if (connection < 0) {
            continue;
        }
        static const char hello[] = "hello from inside\n";
        if (write(connection, hello, sizeof(hello) - 1) < 0) {
            perror("write");
        }
        close(connection);
    }
}

int main(int argc, char** argv) {
    if (argc == 4 && strcmp(argv[1], "varlink") == 0) {
        return varlink_call(argv[2], argv[3]);
    }
    if (argc == 3 && strcmp(argv[1], "serve-in-netns") == 0) {
        return serve_in_netns(atoi(argv[2]));
    }
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
