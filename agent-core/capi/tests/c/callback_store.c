/*
 * ecu_update.h with a store implemented in C (struct ecu_update_store_ops): an in-memory
 * object store. Run in a folder holding flat.update (a signed from-scratch update whose tree
 * has no subdirectory), flat.commit (its commit id, 32 bytes) and nested.update (a tree with
 * subdirectories). Checks the install, its progress and callbacks, and every refusal's code,
 * store code and message. Prints "ALL PASS" and exits 0 when everything held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecu_update.h"

#ifndef ECU_TEST_KEY
#error "define ECU_TEST_KEY"
#endif

static const uint8_t KEYS[ECU_UPDATE_KEY_LEN] = {ECU_TEST_KEY};
static _Alignas(ECU_UPDATE_MEM_ALIGN) uint8_t mem[ECU_UPDATE_MEM_SIZE + 16];
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

/* ---- an in-memory store ---- */

#define MAX_OBJECTS 256
struct object {
    uint8_t kind;
    uint8_t id[ECU_UPDATE_ID_LEN];
    uint8_t *data;
    uint64_t len, filled;
};
struct store {
    struct object objects[MAX_OBJECTS];
    size_t count;
    struct object open; /* the object begun last */
    int is_open;
    uint8_t commit[ECU_UPDATE_ID_LEN];
    char ref[ECU_UPDATE_REF_CAP];
    int committed, aborts, part_verified, writes, fail_write_at;
};

static void drop_all(struct store *s)
{
    for (size_t i = 0; i < s->count; i++)
        free(s->objects[i].data);
    s->count = 0;
    if (s->is_open)
        free(s->open.data);
    s->is_open = 0;
}

static int32_t has_commit(void *ctx, const uint8_t *id, bool *out)
{
    struct store *s = ctx;
    *out = s->committed && memcmp(s->commit, id, ECU_UPDATE_ID_LEN) == 0;
    return 0;
}

static int32_t has_object(void *ctx, uint8_t kind, const uint8_t *id, bool *out)
{
    struct store *s = ctx;
    *out = false;
    for (size_t i = 0; i < s->count; i++)
        if (s->objects[i].kind == kind && memcmp(s->objects[i].id, id, ECU_UPDATE_ID_LEN) == 0)
            *out = true;
    return 0;
}

static int32_t begin_object(void *ctx, uint8_t kind, const uint8_t *id, uint64_t len)
{
    struct store *s = ctx;
    if (s->is_open || s->count == MAX_OBJECTS || len > (16u << 20))
        return 1;
    s->open.kind = kind;
    memcpy(s->open.id, id, ECU_UPDATE_ID_LEN);
    s->open.len = len;
    s->open.filled = 0;
    s->open.data = malloc(len ? (size_t)len : 1);
    s->is_open = s->open.data != NULL;
    return s->is_open ? 0 : 2;
}

static int32_t write_object(void *ctx, const uint8_t *data, size_t len)
{
    struct store *s = ctx;
    if (++s->writes == s->fail_write_at)
        return 77;
    if (!s->is_open || len > s->open.len - s->open.filled)
        return 3;
    memcpy(s->open.data + s->open.filled, data, len);
    s->open.filled += len;
    return 0;
}

static int32_t finish_object(void *ctx)
{
    struct store *s = ctx;
    if (!s->is_open || s->open.filled != s->open.len)
        return 4;
    s->objects[s->count++] = s->open;
    s->is_open = 0;
    return 0;
}

static void abort_object(void *ctx)
{
    struct store *s = ctx;
    if (s->is_open)
        free(s->open.data);
    s->is_open = 0;
}

static int32_t reuse_object(void *ctx, uint8_t kind, const uint8_t *id, bool *found)
{
    return has_object(ctx, kind, id, found);
}

static int32_t commit(void *ctx, const char *ref, size_t ref_len, const uint8_t *id)
{
    struct store *s = ctx;
    if (ref_len >= sizeof s->ref)
        return 5;
    memcpy(s->ref, ref, ref_len);
    s->ref[ref_len] = 0;
    memcpy(s->commit, id, ECU_UPDATE_ID_LEN);
    s->committed = 1;
    return 0;
}

static void abort_install(void *ctx)
{
    struct store *s = ctx;
    s->aborts++;
    drop_all(s);
}

static int32_t part_verified(void *ctx)
{
    ((struct store *)ctx)->part_verified++;
    return 0;
}

static const ecu_update_store_ops OPS = {
    .has_commit = has_commit,
    .has_object = has_object,
    .begin_object = begin_object,
    .write_object = write_object,
    .finish_object = finish_object,
    .abort_object = abort_object,
    .reuse_object = reuse_object,
    .commit = commit,
    .abort = abort_install,
    .part_verified = part_verified,
    /* tree_depth NULL: nested directories are refused. */
};

/* ---- helpers ---- */

static uint8_t *read_file(const char *name, size_t *len)
{
    FILE *f = fopen(name, "rb");
    uint8_t *buf;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(*len ? *len : 1);
    if (buf && fread(buf, 1, *len, f) != *len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* Feeds `file` in `chunk`-byte pieces; returns the first failing code or finish's. */
static int32_t install(ecu_update *u, const uint8_t *file, size_t len, size_t chunk,
                       ecu_update_progress *p, ecu_update_installed *done)
{
    for (size_t at = 0; at < len; at += chunk) {
        size_t n = len - at < chunk ? len - at : chunk;
        int32_t rc = ecu_update_feed(u, file + at, n, p);
        if (rc != ECU_UPDATE_OK)
            return rc;
    }
    return ecu_update_finish(u, done);
}

static int message_has(ecu_update *u, const char *needle)
{
    char msg[512];
    size_t n = ecu_update_message(u, msg, sizeof msg);
    printf("     message: %s\n", msg);
    return n > 0 && strstr(msg, needle) != NULL;
}

int main(void)
{
    ecu_update *u = NULL;
    struct store *store = calloc(1, sizeof *store);
    size_t flat_len = 0, nested_len = 0, commit_len = 0;
    uint8_t *flat = read_file("flat.update", &flat_len);
    uint8_t *nested = read_file("nested.update", &nested_len);
    uint8_t *expected = read_file("flat.commit", &commit_len);
    ecu_update_policy policy = {.trusted_keys = KEYS, .trusted_count = 1};
    ecu_update_progress p;
    ecu_update_installed done;
    int32_t rc;
    if (!store || !flat || !nested || !expected || commit_len != ECU_UPDATE_ID_LEN) {
        puts("FAIL: test files missing");
        return 1;
    }

    /* The lent memory. */
    CHECK(ecu_update_init(NULL, sizeof mem, &u) == ECU_UPDATE_E_ARGUMENT, "init: NULL memory");
    CHECK(ecu_update_init(mem, ECU_UPDATE_MEM_SIZE - 1, &u) == ECU_UPDATE_E_MEMORY,
          "init: one byte too small");
    CHECK(ecu_update_init(mem + 1, ECU_UPDATE_MEM_SIZE, &u) == ECU_UPDATE_E_MEMORY,
          "init: misaligned");
    CHECK(ecu_update_init(mem, ECU_UPDATE_MEM_SIZE, &u) == ECU_UPDATE_OK && u != NULL,
          "init: ECU_UPDATE_MEM_SIZE bytes aligned to ECU_UPDATE_MEM_ALIGN");

    /* No store yet. */
    CHECK(ecu_update_feed(u, flat, 16, NULL) == ECU_UPDATE_E_NO_STORE, "feed without a store");
    CHECK(message_has(u, "no store is set"), "the message says so");

    /* A required callback missing. */
    {
        ecu_update_store_ops broken = OPS;
        broken.write_object = NULL;
        CHECK(ecu_update_use_store(u, &broken, store) == ECU_UPDATE_E_CALLBACK,
              "use_store: write_object NULL");
        CHECK(message_has(u, "write_object"), "the message names the callback");
    }
    CHECK(ecu_update_use_store(u, &OPS, store) == ECU_UPDATE_OK, "use_store");

    /* No trusted key: a signed file is refused before anything reaches the store. */
    rc = install(u, flat, flat_len, 4096, &p, &done);
    CHECK(rc == ECU_UPDATE_E_NO_TRUSTED_KEYS, "no trusted key: refused");
    CHECK(store->count == 0 && !store->is_open, "nothing reached the store");
    CHECK(strcmp(ecu_update_strerror(rc), "no trusted key is set") == 0, "stable text");
    CHECK(ecu_update_feed(u, flat, 1, NULL) == ECU_UPDATE_E_FAILED, "failed until reset");

    /* The install, in 7-byte pieces. */
    CHECK(ecu_update_set_policy(u, &policy) == ECU_UPDATE_OK, "set_policy: the test key");
    memset(&p, 0, sizeof p);
    rc = install(u, flat, flat_len, 7, &p, &done);
    CHECK(rc == ECU_UPDATE_OK, "install in 7-byte pieces");
    if (rc != ECU_UPDATE_OK)
        message_has(u, "");
    CHECK(p.done && p.bytes == flat_len && p.bytes_total == flat_len, "progress: bytes");
    CHECK(p.objects == p.objects_total && p.objects_total == store->count, "progress: objects");
    CHECK(p.parts == p.parts_total && p.parts_total >= 1, "progress: parts");
    CHECK(store->part_verified == (int)p.parts_total, "part_verified once per part");
    CHECK(store->committed && memcmp(store->commit, expected, ECU_UPDATE_ID_LEN) == 0 &&
              memcmp(done.commit, expected, ECU_UPDATE_ID_LEN) == 0,
          "commit callback and result name the commit");
    CHECK(strcmp(store->ref, "ecu/test/main") == 0 && strcmp(done.ref_name, store->ref) == 0,
          "the ref");
    CHECK(!done.is_delta, "from scratch");
    CHECK(ecu_update_finish(u, &done) == ECU_UPDATE_OK, "finish again: same result");

    /* The store fails: its code comes back. */
    drop_all(store);
    store->committed = 0;
    store->writes = 0;
    store->fail_write_at = 3;
    CHECK(ecu_update_reset(u) == ECU_UPDATE_OK, "reset");
    int aborts = store->aborts;
    rc = install(u, flat, flat_len, 512, &p, &done);
    CHECK(rc == ECU_UPDATE_E_STORE && ecu_update_last_error(u) == rc, "store failure");
    CHECK(ecu_update_store_code(u) == 77, "the callback's code");
    CHECK(message_has(u, "write_object failed with code 77"), "the message names it");
    CHECK(store->aborts == aborts + 1 && !store->committed, "the store was told to abort");
    store->fail_write_at = 0;

    /* Truncated. */
    CHECK(ecu_update_reset(u) == ECU_UPDATE_OK, "reset");
    CHECK(ecu_update_feed(u, flat, flat_len / 2, NULL) == ECU_UPDATE_OK, "half the file");
    CHECK(ecu_update_finish(u, &done) == ECU_UPDATE_E_TRUNCATED, "finish early: truncated");
    CHECK(message_has(u, "truncated"), "the message says how much arrived");

    /* A tree with subdirectories needs tree_depth. */
    CHECK(ecu_update_reset(u) == ECU_UPDATE_OK, "reset");
    drop_all(store);
    rc = install(u, nested, nested_len, 1000, &p, &done);
    CHECK(rc == ECU_UPDATE_E_TREE_DEPTH, "nested tree without tree_depth: refused");
    CHECK(message_has(u, "tree_depth"), "the message says what the store lacks");

    /* Floor. */
    policy.min_security_version = 1000;
    CHECK(ecu_update_set_policy(u, &policy) == ECU_UPDATE_OK, "set_policy: floor 1000");
    rc = install(u, flat, flat_len, 4096, &p, &done);
    CHECK(rc == ECU_UPDATE_E_BELOW_FLOOR, "below the floor");
    CHECK(message_has(u, "below this device's floor 1000"), "the message has both numbers");

    /* Texts. */
    CHECK(strcmp(ecu_update_strerror(12345), "unknown error code") == 0, "unknown code");
    {
        char tiny[8];
        size_t n = ecu_update_message(u, tiny, sizeof tiny);
        CHECK(n > sizeof tiny && strlen(tiny) == sizeof tiny - 1, "message cut to fit, NUL");
    }

    drop_all(store);
    free(store);
    free(flat);
    free(nested);
    free(expected);
    if (failures) {
        printf("%d FAILED\n", failures);
        return 1;
    }
    puts("ALL PASS");
    return 0;
}
