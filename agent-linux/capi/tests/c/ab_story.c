/*
 * The whole A/B story through ecu_agent.h, as an OTA daemon in C drives it. Run in a folder
 * holding v1.update (from scratch, security version 1), v1-v2.update (the delta to v2,
 * security version 2) and v2-bad.update (v2 with one byte flipped), with the sysroot path as
 * argument. Prints "ALL PASS" and exits 0 when every check held.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ecu_agent.h"

#ifndef ECU_TEST_KEY
#error "define ECU_TEST_KEY"
#endif

static const uint8_t KEY[32] = {ECU_TEST_KEY};
static int failures;

#define CHECK(cond, what)                                                                     \
    do {                                                                                      \
        if (cond) {                                                                           \
            printf("ok   %s\n", what);                                                        \
        } else {                                                                              \
            printf("FAIL %s (line %d)\n", what, __LINE__);                                    \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

struct counter {
    int calls;
    int cancel_at; /* cancel on this call (0: never) */
    uint64_t last_bytes;
    int went_back;
};

static int32_t on_progress(void *user, const ecu_agent_progress *p)
{
    struct counter *c = user;
    c->calls++;
    if (p->bytes < c->last_bytes)
        c->went_back = 1;
    c->last_bytes = p->bytes;
    return c->cancel_at != 0 && c->calls >= c->cancel_at;
}

static void say(ecu_agent *a, const char *what)
{
    char msg[1024];
    ecu_agent_message(a, msg, sizeof msg);
    printf("     %s: %s\n", what, msg);
}

static int32_t install_file(ecu_agent *a, const char *name, struct counter *c,
                            ecu_agent_install_result *r)
{
    int fd = open(name, O_RDONLY);
    if (fd < 0)
        return -1000;
    int32_t rc = ecu_agent_install_fd(a, fd, on_progress, c, r);
    close(fd);
    if (rc != ECU_AGENT_OK)
        say(a, name);
    return rc;
}

/* Pushes a file in `block`-byte pieces as a transport would deliver it. */
static int32_t push_file(ecu_agent *a, const char *name, size_t block, struct counter *c,
                         ecu_agent_install_result *r)
{
    uint8_t buf[4096];
    FILE *f = fopen(name, "rb");
    int32_t rc;
    size_t n;
    if (!f || block > sizeof buf)
        return -1000;
    rc = ecu_agent_install_begin(a);
    while (rc == ECU_AGENT_OK && (n = fread(buf, 1, block, f)) > 0)
        rc = ecu_agent_install_push(a, buf, n, on_progress, c);
    if (rc == ECU_AGENT_OK)
        rc = ecu_agent_install_end(a, on_progress, c, r);
    fclose(f);
    if (rc != ECU_AGENT_OK)
        say(a, name);
    return rc;
}

static const ecu_agent_deployment *slot(const ecu_agent_status *st, char s)
{
    for (uint32_t i = 0; i < st->deployment_count; i++)
        if (st->deployments[i].slot == s)
            return &st->deployments[i];
    return NULL;
}

/* Another thread of the daemon: gives up on the transfer (cancel, then close its end of the
 * pipe so that the blocked read wakes). */
struct canceller {
    ecu_agent *a;
    int write_end;
};

static void *cancel_later(void *arg)
{
    struct canceller *c = arg;
    const struct timespec wait = {0, 200 * 1000 * 1000};
    nanosleep(&wait, NULL);
    ecu_agent_cancel(c->a);
    close(c->write_end);
    return NULL;
}

/* Installs from a pipe that delivers the first half of `name` and then stalls, until
 * another thread cancels. */
static int32_t install_stalled(ecu_agent *a, const char *name)
{
    uint8_t buf[65536];
    int fds[2];
    FILE *f = fopen(name, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    pthread_t t;
    struct canceller c;
    int32_t rc;
    if (f)
        fclose(f);
    if (n == 0 || pipe(fds) != 0)
        return -1000;
    if (write(fds[1], buf, n / 2) != (ssize_t)(n / 2))
        return -1001;
    c.a = a;
    c.write_end = fds[1];
    pthread_create(&t, NULL, cancel_later, &c);
    rc = ecu_agent_install_fd(a, fds[0], NULL, NULL, NULL);
    pthread_join(t, NULL);
    close(fds[0]);
    say(a, "stalled transfer");
    return rc;
}

/* Whether two statuses show the same deployments in the same roles. */
static int same(const ecu_agent_status *x, const ecu_agent_status *y)
{
    if (x->deployment_count != y->deployment_count || strcmp(x->state, y->state) != 0 ||
        x->next_boot != y->next_boot || x->security_floor != y->security_floor)
        return 0;
    for (uint32_t i = 0; i < x->deployment_count; i++) {
        const ecu_agent_deployment *d = &x->deployments[i], *e = &y->deployments[i];
        if (strcmp(d->name, e->name) || strcmp(d->commit, e->commit) ||
            strcmp(d->role, e->role) || d->good != e->good || d->booted != e->booted ||
            d->next_boot != e->next_boot || d->tries_left != e->tries_left ||
            d->present != e->present) {
            printf("     slot %c: %s %s %s -> %s %s %s\n", d->slot, e->name, e->role,
                   e->present ? "present" : "absent", d->name, d->role,
                   d->present ? "present" : "absent");
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    ecu_agent *a = NULL;
    ecu_agent_options opts;
    ecu_agent_install_result r;
    ecu_agent_status st, before;
    struct counter c;
    char errbuf[512] = "", booted = 0, next = 0;
    uint8_t kind = 9;
    uint64_t floor = 0;
    int32_t rc;
    if (argc != 2) {
        puts("usage: ab_story SYSROOT");
        return 2;
    }

    /* Opening. */
    memset(&opts, 0, sizeof opts);
    rc = ecu_agent_open(argv[1], &opts, &a, errbuf, sizeof errbuf);
    CHECK(rc != ECU_AGENT_OK && a == NULL && errbuf[0], "open without create: no sysroot");
    printf("     %s\n", errbuf);
    opts.booted_slot = 'X';
    CHECK(ecu_agent_open(argv[1], &opts, &a, NULL, 0) == ECU_AGENT_E_ARGUMENT, "bad slot");
    opts.booted_slot = 0;
    opts.create = true;
    opts.trusted_keys = KEY;
    opts.trusted_count = 1;
    CHECK(ecu_agent_open(argv[1], &opts, &a, errbuf, sizeof errbuf) == ECU_AGENT_OK && a,
          "open, creating the sysroot");

    /* 1. The first install provisions the booted deployment. */
    memset(&c, 0, sizeof c);
    rc = install_file(a, "v1.update", &c, &r);
    CHECK(rc == ECU_AGENT_OK, "install v1 from a file descriptor");
    CHECK(strcmp(r.action, "provisioned") == 0 && r.slot == 'A' && strcmp(r.version, "1") == 0,
          "v1 provisioned in slot A");
    CHECK(r.security_version == 1 && strlen(r.commit) == 64, "its commit and security version");
    CHECK(c.calls > 0 && !c.went_back, "progress reported, never backwards");
    CHECK(ecu_agent_get_status(a, &st) == ECU_AGENT_OK, "status");
    CHECK(st.deployment_count == 1 && slot(&st, 'A') && slot(&st, 'A')->good &&
              st.next_boot == 'A',
          "status: A good, next boot A");

    /* 2. The delta, pushed in 4093-byte blocks, is staged in slot B. */
    CHECK(ecu_agent_set_booted_slot(a, 'A') == ECU_AGENT_OK, "booted slot A");
    memset(&c, 0, sizeof c);
    rc = push_file(a, "v1-v2.update", 4093, &c, &r);
    CHECK(rc == ECU_AGENT_OK, "install v1->v2 by pushing 4093-byte blocks");
    CHECK(strcmp(r.action, "staged") == 0 && r.slot == 'B' && strcmp(r.version, "2") == 0,
          "v2 staged in slot B");
    CHECK(c.calls > 0 && !c.went_back, "progress on the pushing thread");
    CHECK(ecu_agent_get_status(a, &st) == ECU_AGENT_OK && strcmp(st.state, "staged") == 0 &&
              st.next_boot == 'B' && st.booted_slot == 'A' && slot(&st, 'B') &&
              !slot(&st, 'B')->good && slot(&st, 'B')->tries_left > 0,
          "status: staged, next boot B on trial");

    /* 3. Reboot into B, mark it good: the floor rises to 2. */
    CHECK(ecu_agent_simulate_boot(a, &booted, &kind) == ECU_AGENT_OK && booted == 'B' &&
              kind == 1,
          "boot: B on trial");
    CHECK(ecu_agent_get_status(a, &st) == ECU_AGENT_OK && strcmp(st.state, "trial") == 0 &&
              st.booted_slot == 'B' && !st.booted_good,
          "status: trial in B");
    CHECK(ecu_agent_mark_good(a, &floor) == ECU_AGENT_OK && floor == 2, "mark good, floor 2");
    CHECK(ecu_agent_get_status(a, &st) == ECU_AGENT_OK && st.booted_good &&
              st.security_floor == 2 && slot(&st, 'B')->good &&
              slot(&st, 'B')->security_version == 2,
          "status: B good, floor 2");
    before = st;

    /* 4. A damaged file is refused; nothing changes. */
    memset(&c, 0, sizeof c);
    rc = install_file(a, "v2-bad.update", &c, &r);
    CHECK(rc == ECU_AGENT_E_UPDATE && ecu_agent_last_error(a) == rc, "damaged file refused");
    CHECK(strcmp(ecu_agent_strerror(rc), "the update was refused") == 0, "its stable text");
    CHECK(ecu_agent_get_status(a, &st) == ECU_AGENT_OK && same(&st, &before),
          "deployments unchanged");

    /* 5. v1 again: below the floor. */
    rc = install_file(a, "v1.update", &c, &r);
    CHECK(rc == ECU_AGENT_E_BELOW_FLOOR, "v1 replayed: below the floor");
    {
        char msg[512];
        ecu_agent_message(a, msg, sizeof msg);
        CHECK(strstr(msg, "floor 2") != NULL, "the message names the floor");
    }

    /* 6. Cancellation: by the progress callback, and by ecu_agent_cancel. */
    memset(&c, 0, sizeof c);
    c.cancel_at = 1;
    rc = install_file(a, "v1-v2.update", &c, &r);
    CHECK(rc == ECU_AGENT_E_CANCELLED, "cancelled by the progress callback");
    memset(&c, 0, sizeof c);
    CHECK(ecu_agent_install_begin(a) == ECU_AGENT_OK, "begin a pushed install");
    CHECK(ecu_agent_install_begin(a) == ECU_AGENT_E_SEQUENCE, "a second begin is refused");
    CHECK(ecu_agent_cancel(a) == ECU_AGENT_OK, "cancel");
    {
        uint8_t junk[64];
        memset(junk, 0, sizeof junk);
        rc = ecu_agent_install_push(a, junk, sizeof junk, on_progress, &c);
    }
    CHECK(rc == ECU_AGENT_E_CANCELLED, "the push says cancelled");
    CHECK(ecu_agent_install_end(a, NULL, NULL, NULL) == ECU_AGENT_E_SEQUENCE,
          "the install is over");
    CHECK(install_stalled(a, "v1-v2.update") == ECU_AGENT_E_CANCELLED,
          "a stalled transfer cancelled from another thread");
    CHECK(ecu_agent_get_status(a, &st) == ECU_AGENT_OK && same(&st, &before),
          "cancelled installs changed nothing");

    /* 7. Rollback to A. */
    CHECK(ecu_agent_rollback(a, &next) == ECU_AGENT_OK && next == 'A', "rollback: next A");
    CHECK(ecu_agent_get_status(a, &st) == ECU_AGENT_OK && st.next_boot == 'A', "status: next A");
    CHECK(ecu_agent_simulate_boot(a, &booted, &kind) == ECU_AGENT_OK && booted == 'A' &&
              kind == 0,
          "boot: A, confirmed");

    /* 8. Arguments. */
    CHECK(ecu_agent_get_status(a, NULL) == ECU_AGENT_E_ARGUMENT, "status into NULL");
    say(a, "NULL out");
    CHECK(ecu_agent_get_status(NULL, &st) == ECU_AGENT_E_ARGUMENT, "NULL handle");
    CHECK(ecu_agent_install_fd(a, -1, NULL, NULL, NULL) == ECU_AGENT_E_ARGUMENT, "fd -1");

    ecu_agent_close(a);
    ecu_agent_close(NULL);
    if (failures) {
        printf("%d FAILED\n", failures);
        return 1;
    }
    puts("ALL PASS");
    return 0;
}
