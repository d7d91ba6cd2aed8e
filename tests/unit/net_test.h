/*
 * Loopback socket helpers shared by the unit tests that talk over real
 * sockets (tests only). Each test file is its own program, so the helpers are
 * static; they are inline so that a file may use only some of them.
 */
#ifndef SL_TESTS_NET_TEST_H
#define SL_TESTS_NET_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* 127.0.0.1:port; port 0 lets bind pick a free one. */
static inline struct sockaddr_in loopback_addr(uint16_t port)
{
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return sa;
}

/* Binds fd to a loopback port that the kernel picks, and returns that port. */
static inline uint16_t bind_loopback(int fd)
{
    struct sockaddr_in sa = loopback_addr(0);
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

/* A loopback TCP port that was free a moment ago (nothing holds it now). */
static inline uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port = bind_loopback(fd);
    close(fd);
    return port;
}

#endif
