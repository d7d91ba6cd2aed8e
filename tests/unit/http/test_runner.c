/*
 * The runner: workers start, every worker runs a broadcast task on its own
 * loop, and a signal shuts everything down gracefully.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../net_test.h"
#include "http/http.h"

static atomic_int ran;
static atomic_uint seen_workers; /* bit per worker index */

static void on_request(struct sl_http_request *req, void *data)
{
    sl_http_respond(req, 200, SL_STR("text/plain"), SL_STR("ok"));
}

static void task(struct sl_http_worker *w, void *arg)
{
    assert_non_null(sl_http_worker_server(w, 0));
    assert_null(sl_http_worker_server(w, 1));
    atomic_fetch_or(&seen_workers, 1u << sl_http_worker_index(w));
    if (atomic_fetch_add(&ran, 1) + 1 == *(int *)arg)
        raise(SIGTERM); /* the last worker ends the run */
}

static void test_broadcast_and_shutdown(void **state)
{
    static int workers = 3;
    struct sl_config_addr addr = {"127.0.0.1", free_port()};
    struct sl_config_limits limits = {16384, 1 << 20, 5000, 5000, 5000, 1000, 100};
    struct sl_http_site site = {&addr, 1, "test", on_request, NULL};
    struct sl_http_runner_options opts = {
        .workers = (unsigned)workers, .sites = &site, .n_sites = 1, .limits = &limits};
    struct sl_http_runner *r = NULL;
    assert_int_equal(sl_http_runner_new(&opts, &r), SL_OK);
    assert_int_equal(sl_http_runner_broadcast(r, task, &workers, NULL), SL_OK);
    assert_int_equal(sl_http_runner_run(r), SL_OK);
    assert_int_equal(atomic_load(&ran), workers);
    assert_int_equal(atomic_load(&seen_workers), 7);
    /* After the run, workers are gone: a broadcast is refused, not lost in a closed queue. */
    assert_int_equal(sl_http_runner_broadcast(r, task, &workers, NULL), SL_ESTATE);
    sl_http_runner_free(r);
}

static void test_port_in_use_is_reported(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port = bind_loopback(fd);
    assert_int_equal(listen(fd, 1), 0);
    struct sl_config_addr addr = {"127.0.0.1", port};
    struct sl_config_limits limits = {16384, 1 << 20, 5000, 5000, 5000, 1000, 100};
    struct sl_http_site site = {&addr, 1, "test", on_request, NULL};
    struct sl_http_runner_options opts = {
        .workers = 2, .sites = &site, .n_sites = 1, .limits = &limits};
    struct sl_http_runner *r = NULL;
    assert_int_equal(sl_http_runner_new(&opts, &r), SL_EIO);
    assert_null(r);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broadcast_and_shutdown),
        cmocka_unit_test(test_port_in_use_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
